//! The replication protocol's messages. The syncing side speaks first; every session starts with
//! a hello from each side. Nodes of different protocol versions stop there; nodes of different
//! software or schema versions keep the session for heartbeats only (each side refuses
//! everything else), so a peer in the middle of an upgrade counts as alive, not failed.

use serde::{Deserialize, Serialize};

/// Bumped when the message set changes incompatibly. `Hello`, `Heartbeat` (with `PeerView`) and
/// `Refused` must stay readable across releases even then: nodes of different versions exchange
/// them during an upgrade, and a heartbeat that cannot be read counts as a failed one, which
/// would promote a Secondary beside a healthy Primary. Add fields with `#[serde(default)]`.
pub const PROTOCOL_VERSION: u32 = 1;
/// The SSH subsystem that carries the protocol; nothing else is offered on the channel.
pub const SUBSYSTEM: &str = "tandem-replication@1";

/// This build's software version. Debug builds (tests) may pretend to be another version through
/// `TANDEM_TEST_SOFTWARE_VERSION`, so the version-mismatch path can be tested black-box; release
/// builds ignore the variable.
pub fn software_version() -> String {
    #[cfg(debug_assertions)]
    if let Ok(version) = std::env::var("TANDEM_TEST_SOFTWARE_VERSION") {
        return version;
    }
    env!("CARGO_PKG_VERSION").to_owned()
}

/// Who a node is and where its history stands. Unknown fields are ignored: a later release may
/// add some (see [`PROTOCOL_VERSION`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    pub protocol_version: u32,
    pub software_version: String,
    pub schema_version: i64,
    pub node_name: String,
    pub node_id: String,
    pub epoch: i64,
    pub position_seq: i64,
    pub position_checksum: String,
    /// Milliseconds since the Unix epoch, so each side can see the other's clock.
    pub wall_clock_ms: i64,
}

impl Hello {
    /// Why `self` and `peer` must not replicate, or `None` if they may.
    pub fn incompatibility(&self, peer: &Hello) -> Option<String> {
        if self.protocol_version != peer.protocol_version {
            return Some(format!(
                "replication protocol versions differ: {} here, {} on {}",
                self.protocol_version, peer.protocol_version, peer.node_name
            ));
        }
        if self.software_version != peer.software_version {
            return Some(format!(
                "software versions differ: Tandem {} here, {} on {}; upgrade both nodes to the same release",
                self.software_version, peer.software_version, peer.node_name
            ));
        }
        if self.schema_version != peer.schema_version {
            return Some(format!(
                "schema versions differ: {} here, {} on {}; upgrade both nodes to the same release",
                self.schema_version, peer.schema_version, peer.node_name
            ));
        }
        None
    }
}

/// A file of the file store, as listed in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileRef {
    pub sha256: String,
    pub size_bytes: i64,
}

/// What the syncing side sends. After the hellos it may send any number of requests, one at a
/// time, each answered before the next.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Request {
    Hello(Hello),
    /// Every entry after the caller's position, if that position is in the source's history.
    /// Answered by `Changes` frames until one has `more: false`, or by `NotInHistory`.
    /// With `wait_ms` (continuous replication), a caller that is up to date gets its answer
    /// as soon as a later write commits, or an empty one after `wait_ms` (at most
    /// [`crate::source::FOLLOW_WAIT_MAX`]): a long poll, so new entries reach it at once.
    #[serde(rename_all = "camelCase")]
    Changes {
        after_seq: i64,
        after_checksum: String,
        #[serde(default)]
        wait_ms: u64,
    },
    /// The source's checksum at one sequence number (to find where two histories fork).
    #[serde(rename_all = "camelCase")]
    ChecksumAt {
        seq: i64,
    },
    /// A consistent snapshot of the whole replicated database: `SnapshotBegin`, data frames with
    /// the pages in order, `SnapshotEnd`.
    Snapshot,
    /// One file of the file store: `FileBegin`, data frames, `FileEnd`.
    File {
        sha256: String,
    },
    /// Row counts and digests of every replicated table (`tandem ha verify`).
    Digests,
    /// A heartbeat (guide: the Secondary checks its Primary), or a startup check: the caller
    /// says how it stands, the answer says how this node stands. Epochs travel both ways, so
    /// either side can fence itself.
    Heartbeat(tandem_ha::machine::PeerView),
    /// A step of a planned switchover (`tandem ha switchover`), sent by the Standby that takes
    /// over to the Active node that hands over.
    Switchover {
        step: SwitchoverStep,
    },
}

/// The Active node's part in a switchover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SwitchoverStep {
    /// Refuse new device connections and close writes; answer with the final position.
    Quiesce,
    /// The switchover was abandoned: open writes and device connections again.
    Resume,
    /// The caller is Active now: become its Standby Secondary.
    Demote,
}

/// What the source answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Response {
    Hello(Hello),
    /// The source will not continue; the reason is for the operator.
    Refused {
        reason: String,
    },
    #[serde(rename_all = "camelCase")]
    Changes {
        entries: Vec<tandem_store::changes::ChangeEntry>,
        more: bool,
        /// Wall-clock ms at which the first of `entries` was committed on the source, when the
        /// source still knows it (first frame of an answer only): a follower's lag is measured
        /// from it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        committed_at_ms: Option<i64>,
    },
    /// The caller's position is not in the source's retained history: either it is older than
    /// the retained log (`base_seq`), or the histories differ there.
    #[serde(rename_all = "camelCase")]
    NotInHistory {
        base_seq: i64,
        position_seq: i64,
    },
    #[serde(rename_all = "camelCase")]
    ChecksumAt {
        seq: i64,
        checksum: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    SnapshotBegin {
        page_size: u32,
        page_count: u64,
        position_seq: i64,
        files: Vec<FileRef>,
    },
    /// SHA-256 over every page sent, in order.
    SnapshotEnd {
        sha256: String,
    },
    #[serde(rename_all = "camelCase")]
    FileBegin {
        sha256: String,
        size_bytes: i64,
    },
    FileEnd,
    Digests {
        tables: Vec<tandem_store::changes::TableDigest>,
    },
    Heartbeat(tandem_ha::machine::PeerView),
    /// A switchover step is done; the position is this node's after it.
    #[serde(rename_all = "camelCase")]
    Switchover {
        position_seq: i64,
        position_checksum: String,
        epoch: i64,
    },
    /// The request failed on the source; the session stays usable.
    Error {
        message: String,
    },
}
