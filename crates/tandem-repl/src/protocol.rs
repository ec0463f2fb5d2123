//! The replication protocol's messages. The syncing side speaks first; every session starts with
//! a hello from each side, and nothing else happens unless both run the same software and schema.

use serde::{Deserialize, Serialize};

/// Bumped when the message set changes incompatibly.
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

/// Who a node is and where its history stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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

/// What the syncing side sends.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Request {
    Hello(Hello),
}

/// What the source answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Response {
    Hello(Hello),
    /// The source will not continue; the reason is for the operator.
    Refused { reason: String },
}
