//! Tandem's pure high-availability core.
//!
//! This crate holds the guide's vocabulary as types — a node's configured **Mode** (Primary or
//! Secondary) and its current **State** (Active, Standby, Not Available) — and the decisions made
//! from them. It performs no I/O, reads no clock and knows nothing of SSH, SQLite or tokio.
//!
//! - [`address`]: `HOST[:PORT]`, the one parser of peer addresses.
//! - [`ballot`]: ballots (epoch and node) and the `Tandem-Ballot` probe header.
//! - [`cluster`]: the cluster view, every node known directly or by gossip.
//! - [`config`]: the HA Configuration window's fields, defaults and validation.
//! - [`record`]: the witness's record that lets synchronous replication fall back safely.
//! - [`schedule`]: StartTime / Run Every arithmetic.
//! - [`witness`]: witness URLs and how an `https://` witness's certificate is checked.
//! - [`machine`]: the HA controller — heartbeats, failure detection, promotion with epochs,
//!   fencing, the schedule — as events in, commands out.

pub mod address;
pub mod ballot;
pub mod cluster;
pub mod config;
pub mod machine;
pub mod record;
pub mod schedule;
pub mod witness;

use serde::{Deserialize, Serialize};
use std::fmt;

/// The configured role of a node (guide: Mode in the HA Configuration window).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    Primary,
    Secondary,
}

/// What a node does now (guide: Node Status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Serves devices and the admin API read-write.
    Active,
    /// Heartbeats and syncs from its Primary; serves no device traffic; admin API read-only.
    Standby,
    /// Must not serve, e.g. a former Primary that came back after its Secondary was promoted.
    #[serde(rename = "Not Available")]
    NotAvailable,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Primary => "Primary",
            Mode::Secondary => "Secondary",
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Active => "Active",
            State::Standby => "Standby",
            State::NotAvailable => "Not Available",
        })
    }
}

/// The role and state a node serves with, as the listeners see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub ha_enabled: bool,
    pub mode: Mode,
    pub state: State,
}

impl NodeStatus {
    /// HA disabled (the default): a standalone node is a Primary that is Active.
    pub const STANDALONE: NodeStatus = NodeStatus {
        ha_enabled: false,
        mode: Mode::Primary,
        state: State::Active,
    };

    /// Device endpoints and admin writes are open only on an Active node.
    pub fn accepts_writes(&self) -> bool {
        self.state == State::Active
    }
}

/// The exact text load balancers match (guide: Load balancer setup). Kept verbatim so existing
/// F5 and HAProxy monitors work unchanged.
pub const PROBE_OK: &str = "MOBILEIRON-STATUS: OK";

/// An answer to a load-balancer probe: whether it passes, and the body to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeAnswer {
    pub healthy: bool,
    pub body: &'static str,
}

/// `GET /status/status.html`: passes only while the node is Active, which is the one condition
/// under which a load balancer may send it device traffic.
pub fn status_probe(status: NodeStatus) -> ProbeAnswer {
    match status.state {
        State::Active => ProbeAnswer {
            healthy: true,
            body: "MOBILEIRON-STATUS: OK\n",
        },
        State::Standby => ProbeAnswer {
            healthy: false,
            body: "TANDEM-STATUS: STANDBY (this node does not serve devices)\n",
        },
        State::NotAvailable => ProbeAnswer {
            healthy: false,
            body: "TANDEM-STATUS: NOT AVAILABLE (this node must not serve)\n",
        },
    }
}

/// `GET /hastatus.html`: tells a load balancer whether it is safe to move traffic here. A healthy
/// Standby says so; an Active node reports itself as acting Primary.
pub fn ha_status_probe(status: NodeStatus) -> ProbeAnswer {
    match status.state {
        State::Active => ProbeAnswer {
            healthy: true,
            body: "MOBILEIRON-STATUS: OK (Mode: Primary)\n",
        },
        State::Standby => ProbeAnswer {
            healthy: true,
            body: "MOBILEIRON-STATUS: OK (Mode: Standby)\n",
        },
        State::NotAvailable => ProbeAnswer {
            healthy: false,
            body: "TANDEM-STATUS: NOT AVAILABLE (Mode: none)\n",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_state(state: State) -> NodeStatus {
        NodeStatus {
            ha_enabled: true,
            mode: Mode::Secondary,
            state,
        }
    }

    #[test]
    fn standalone_node_is_an_active_primary() {
        assert_eq!(
            status_probe(NodeStatus::STANDALONE),
            ProbeAnswer {
                healthy: true,
                body: "MOBILEIRON-STATUS: OK\n"
            }
        );
        assert_eq!(
            ha_status_probe(NodeStatus::STANDALONE).body,
            "MOBILEIRON-STATUS: OK (Mode: Primary)\n"
        );
        assert!(NodeStatus::STANDALONE.accepts_writes());
    }

    #[test]
    fn standby_fails_status_but_passes_hastatus() {
        let standby = with_state(State::Standby);
        let status = status_probe(standby);
        assert!(!status.healthy);
        assert!(!status.body.contains(PROBE_OK));
        assert_eq!(
            ha_status_probe(standby),
            ProbeAnswer {
                healthy: true,
                body: "MOBILEIRON-STATUS: OK (Mode: Standby)\n"
            }
        );
        assert!(!standby.accepts_writes());
    }

    #[test]
    fn not_available_fails_both_probes_without_the_ok_text() {
        let fenced = with_state(State::NotAvailable);
        for answer in [status_probe(fenced), ha_status_probe(fenced)] {
            assert!(!answer.healthy);
            assert!(!answer.body.contains(PROBE_OK), "{}", answer.body);
        }
    }

    #[test]
    fn states_print_in_the_guide_words() {
        assert_eq!(State::NotAvailable.to_string(), "Not Available");
        assert_eq!(
            serde_json::to_string(&State::NotAvailable).unwrap(),
            "\"Not Available\""
        );
    }
}
