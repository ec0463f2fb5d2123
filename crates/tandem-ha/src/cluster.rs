//! The cluster view: every node this node knows of, directly or by gossip, and the newest claim
//! to serve among them.
//!
//! Every heartbeat, heartbeat answer and peer check carries the sender's view of the other nodes
//! ([`KnownNode`]), so knowledge travels transitively: a main Primary that trusts only its
//! Secondary still learns, through it, that the DR node was promoted. Entries are merged by
//! freshness: an entry replaces the one held when it was seen more recently. Times travel as the
//! sender's own clock together with the sender's clock at sending, so no two nodes' clocks are
//! ever compared.

use crate::ballot::Ballot;
use crate::{Mode, State};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Nodes kept in the view and sent in one message. A deployment has two or three nodes (the
/// guide's scenarios); 32 leaves room for several pairs trusting each other while bounding what
/// a confused or hostile peer can make a node store or send.
pub const KNOWN_NODES_MAX: usize = 32;

/// A node as the sender of a message knew it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownNode {
    pub node_id: String,
    pub node_name: String,
    /// The address the sender reached it at, when the sender did (HOST:PORT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub ha_enabled: bool,
    pub mode: Mode,
    pub state: State,
    pub epoch: i64,
    /// How old the sender's knowledge was when it sent it, by the sender's monotonic clock (no
    /// wall clock travels, so a clock step on any node changes nothing).
    pub age_ms: u64,
}

impl KnownNode {
    /// Its claim to serve: its ballot while it is Active in the HA group.
    pub fn claim(&self) -> Option<Ballot> {
        (self.state == State::Active && self.ha_enabled)
            .then(|| Ballot::new(self.epoch, self.node_id.clone()))
    }
}

/// How this node knows of another one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Source {
    /// It talked to this node (a heartbeat either way, or a peer check).
    Direct,
    /// Only through another node's gossip: the node it came from.
    Gossip { via: String },
}

/// One entry of the view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub node_id: String,
    pub node_name: String,
    pub address: Option<String>,
    pub ha_enabled: bool,
    pub mode: Mode,
    pub state: State,
    pub epoch: i64,
    /// When the knowledge was current, on this node's monotonic clock (for decisions).
    #[serde(skip)]
    pub seen_at_monotonic_ms: u64,
    /// The same moment on this node's wall clock (for people).
    pub seen_at_ms: i64,
    /// How the latest knowledge arrived.
    pub source: Source,
    /// Whether this node ever talked to it itself.
    pub direct: bool,
    /// Whether this node can reach it: its last check or heartbeat to it succeeded. `None`: this
    /// node never tried (it is not among its Trusted Hosts, or not yet checked).
    pub reachable: Option<bool>,
    /// Why the last attempt to reach it failed.
    pub unreachable_reason: Option<String>,
    /// When (monotonic) this node last failed to reach it: a sighting before that is no sign
    /// that it is still there.
    #[serde(skip)]
    pub unreachable_at_monotonic_ms: Option<u64>,
}

impl Member {
    /// Its claim to serve: its ballot while it is Active in the HA group.
    pub fn claim(&self) -> Option<Ballot> {
        (self.state == State::Active && self.ha_enabled)
            .then(|| Ballot::new(self.epoch, self.node_id.clone()))
    }

    /// Whether it was seen after this node last failed to reach it.
    pub fn seen_since_unreachable(&self) -> bool {
        self.unreachable_at_monotonic_ms
            .is_none_or(|at| self.seen_at_monotonic_ms > at)
    }

    /// Whether this knowledge is newer than `other`'s about the same node: a node's epoch never
    /// goes down, so a higher epoch is newer whatever the times say; within one epoch the later
    /// sighting is.
    fn newer_than(&self, other: &Member) -> bool {
        (self.epoch, self.seen_at_monotonic_ms) > (other.epoch, other.seen_at_monotonic_ms)
    }
}

/// Every node known, by node id; this node itself is never in it.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    members: BTreeMap<String, Member>,
    /// Addresses this node checks that have not answered with a view yet (which node is there is
    /// unknown): the address and the reason.
    silent: BTreeMap<String, String>,
}

/// The current time as the cluster view needs it (see `machine::Now`).
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub monotonic_ms: u64,
    pub wall_ms: i64,
}

impl Cluster {
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn get(&self, node_id: &str) -> Option<&Member> {
        self.members.get(node_id)
    }

    /// Addresses that never answered, with why.
    pub fn silent(&self) -> impl Iterator<Item = (&String, &String)> {
        self.silent.iter()
    }

    /// A node told this one how it stands, now. `address`: where this node reached it, when it
    /// did.
    pub fn direct(&mut self, node: KnownNode, address: Option<String>, at: At) {
        let previous = self.members.get(&node.node_id);
        if let Some(address) = &address {
            self.silent.remove(address);
        }
        if previous.is_some_and(|previous| node.epoch < previous.epoch) {
            // A node's epoch never goes down: this message waited in a queue and says nothing
            // of now (its state with the newer epoch would describe no moment at all).
            return;
        }
        let reached = address.is_some();
        let member = Member {
            address: address.or_else(|| previous.and_then(|member| member.address.clone())),
            reachable: if reached {
                Some(true)
            } else {
                previous.and_then(|member| member.reachable)
            },
            unreachable_reason: if reached {
                None
            } else {
                previous.and_then(|member| member.unreachable_reason.clone())
            },
            unreachable_at_monotonic_ms: previous
                .and_then(|member| member.unreachable_at_monotonic_ms)
                .filter(|_| !reached),
            epoch: node.epoch,
            node_id: node.node_id,
            node_name: node.node_name,
            ha_enabled: node.ha_enabled,
            mode: node.mode,
            state: node.state,
            seen_at_monotonic_ms: at.monotonic_ms,
            seen_at_ms: at.wall_ms,
            source: Source::Direct,
            direct: true,
        };
        self.insert(member);
    }

    /// This node could not reach `address` at `at`.
    pub fn unreachable(&mut self, address: &str, reason: &str, at: At) {
        let member = self
            .members
            .values_mut()
            .find(|member| member.address.as_deref() == Some(address));
        match member {
            Some(member) => {
                member.reachable = Some(false);
                member.unreachable_reason = Some(reason.to_owned());
                member.unreachable_at_monotonic_ms = Some(at.monotonic_ms);
            }
            None if self.silent.len() < KNOWN_NODES_MAX || self.silent.contains_key(address) => {
                self.silent.insert(address.to_owned(), reason.to_owned());
            }
            None => {}
        }
    }

    /// Merges `sender`'s gossip, received at `at`. Entries about `self_id` are ignored: this
    /// node knows itself best. Returns the nodes learned of for the first time.
    pub fn gossip(
        &mut self,
        self_id: &str,
        sender: &str,
        at: At,
        known: &[KnownNode],
    ) -> Vec<KnownNode> {
        let mut learned = Vec::new();
        for node in known.iter().take(KNOWN_NODES_MAX) {
            if node.node_id == self_id {
                continue;
            }
            let previous = self.members.get(&node.node_id);
            let member = Member {
                node_id: node.node_id.clone(),
                node_name: node.node_name.clone(),
                // An address this node reached it at beats the sender's.
                address: previous
                    .filter(|member| member.direct)
                    .and_then(|member| member.address.clone())
                    .or(node.address.clone()),
                ha_enabled: node.ha_enabled,
                mode: node.mode,
                state: node.state,
                epoch: node.epoch,
                seen_at_monotonic_ms: at.monotonic_ms.saturating_sub(node.age_ms),
                seen_at_ms: at.wall_ms.saturating_sub(node.age_ms as i64),
                source: Source::Gossip {
                    via: sender.to_owned(),
                },
                direct: previous.is_some_and(|member| member.direct),
                reachable: previous.and_then(|member| member.reachable),
                unreachable_reason: previous.and_then(|member| member.unreachable_reason.clone()),
                unreachable_at_monotonic_ms: previous
                    .and_then(|member| member.unreachable_at_monotonic_ms),
            };
            match previous {
                Some(previous) if !member.newer_than(previous) => continue,
                Some(_) => {}
                None => learned.push(node.clone()),
            }
            self.insert(member);
        }
        learned
    }

    /// What this node tells others at `at`: every entry, freshest first, bounded.
    pub fn known(&self, at: At) -> Vec<KnownNode> {
        let mut known: Vec<KnownNode> = self
            .members
            .values()
            .map(|member| KnownNode {
                node_id: member.node_id.clone(),
                node_name: member.node_name.clone(),
                address: member.address.clone(),
                ha_enabled: member.ha_enabled,
                mode: member.mode,
                state: member.state,
                epoch: member.epoch,
                age_ms: at.monotonic_ms.saturating_sub(member.seen_at_monotonic_ms),
            })
            .collect();
        known.sort_by_key(|node| node.age_ms);
        known.truncate(KNOWN_NODES_MAX);
        known
    }

    /// The newest claim among the members, with its holder's name.
    pub fn newest_claim(&self) -> Option<(Ballot, &str)> {
        self.members
            .values()
            .filter_map(|member| {
                member
                    .claim()
                    .map(|claim| (claim, member.node_name.as_str()))
            })
            .max_by(|a, b| a.0.cmp(&b.0))
    }

    /// Members that are Active in the HA group and were seen at or after monotonic `since_ms`.
    pub fn live_active(&self, since_ms: u64) -> impl Iterator<Item = &Member> {
        self.members.values().filter(move |member| {
            member.claim().is_some() && member.seen_at_monotonic_ms >= since_ms
        })
    }

    /// The highest epoch any member showed.
    pub fn epoch_max(&self) -> i64 {
        self.members
            .values()
            .map(|member| member.epoch)
            .max()
            .unwrap_or(0)
    }

    fn insert(&mut self, member: Member) {
        self.members.insert(member.node_id.clone(), member);
        // The holder of the newest claim is never the one dropped: forgetting it would let an
        // older ballot serve again.
        let newest = self.newest_claim().map(|(ballot, _)| ballot.node_id);
        while self.members.len() > KNOWN_NODES_MAX {
            let oldest = self
                .members
                .values()
                .filter(|member| Some(&member.node_id) != newest.as_ref())
                .min_by_key(|member| member.seen_at_monotonic_ms)
                .map(|member| member.node_id.clone());
            match oldest {
                Some(id) => self.members.remove(&id),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, state: State, epoch: i64, age_ms: u64) -> KnownNode {
        KnownNode {
            node_id: id.into(),
            node_name: format!("node-{id}"),
            address: Some(format!("{id}.example:22")),
            ha_enabled: true,
            mode: Mode::Secondary,
            state,
            epoch,
            age_ms,
        }
    }

    fn at(monotonic_ms: u64) -> At {
        At {
            monotonic_ms,
            wall_ms: 1_000_000 + monotonic_ms as i64,
        }
    }

    #[test]
    fn gossip_keeps_the_newer_entry_and_a_higher_epoch_always_wins() {
        let mut cluster = Cluster::default();
        let learned = cluster.gossip(
            "a",
            "node-b",
            at(10_000),
            &[node("c", State::Active, 4, 2_000)],
        );
        assert_eq!(learned.len(), 1);
        let member = cluster.get("c").unwrap();
        assert_eq!(member.seen_at_monotonic_ms, 8_000);
        assert_eq!(
            member.source,
            Source::Gossip {
                via: "node-b".into()
            }
        );
        // Older news of c does not replace newer; nor does fresher news of a lower epoch (a
        // node's epoch never goes down: that news is stale whatever its age says).
        cluster.gossip(
            "a",
            "node-d",
            at(20_000),
            &[node("c", State::NotAvailable, 4, 19_000)],
        );
        cluster.gossip(
            "a",
            "node-d",
            at(20_000),
            &[node("c", State::Standby, 3, 0)],
        );
        assert_eq!(cluster.get("c").unwrap().state, State::Active);
        assert_eq!(
            cluster
                .newest_claim()
                .map(|(ballot, name)| (ballot, name.to_owned())),
            Some((Ballot::new(4, "c"), "node-c".to_owned()))
        );
        // Newer news in the same epoch does.
        cluster.gossip(
            "a",
            "node-d",
            at(21_000),
            &[node("c", State::NotAvailable, 4, 0)],
        );
        assert_eq!(cluster.get("c").unwrap().state, State::NotAvailable);
        assert_eq!(cluster.known(at(21_500))[0].age_ms, 500);
    }

    #[test]
    fn gossip_about_this_node_and_beyond_the_bound_is_ignored() {
        let mut cluster = Cluster::default();
        let many: Vec<KnownNode> = (0..KNOWN_NODES_MAX + 10)
            .map(|i| node(&format!("n{i}"), State::Standby, 1, 0))
            .chain([node("a", State::Active, 9, 0)])
            .collect();
        cluster.gossip("a", "node-b", at(0), &many);
        assert_eq!(cluster.members().count(), KNOWN_NODES_MAX);
        assert!(cluster.get("a").is_none());
        assert_eq!(cluster.known(at(0)).len(), KNOWN_NODES_MAX);
    }

    #[test]
    fn a_direct_contact_marks_the_node_reachable_at_its_address() {
        let mut cluster = Cluster::default();
        cluster.unreachable("b.example:22", "connection refused", at(1_000));
        assert_eq!(cluster.silent().count(), 1);
        cluster.direct(
            node("b", State::Standby, 3, 0),
            Some("b.example:22".into()),
            at(5_000),
        );
        let member = cluster.get("b").unwrap();
        assert_eq!(member.reachable, Some(true));
        assert!(member.direct);
        assert_eq!(cluster.silent().count(), 0);
        cluster.unreachable("b.example:22", "timed out", at(5_500));
        assert_eq!(cluster.get("b").unwrap().reachable, Some(false));
        // A queued message with a lower epoch is stale: it changes nothing.
        cluster.direct(node("b", State::Active, 2, 0), None, at(6_000));
        let member = cluster.get("b").unwrap();
        assert_eq!((member.epoch, member.state), (3, State::Standby));
        // Only Active members of the HA group claim, and only recent ones are live.
        cluster.direct(node("c", State::Active, 4, 0), None, at(9_000));
        assert_eq!(cluster.live_active(9_000).count(), 1);
        assert_eq!(cluster.live_active(9_001).count(), 0);
        assert_eq!(cluster.epoch_max(), 4);
    }
}
