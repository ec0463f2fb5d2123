//! Ballots, and how a node states its own on the load-balancer probes.
//!
//! An epoch is a ballot, as in Paxos: a counter and the node that took it, compared in that
//! order. A node takes a ballot when it becomes Active in the HA group (a promotion), and the
//! ballot is the node's claim to serve the fleet. Ballots reach every node (heartbeats, hellos,
//! peer checks, gossip) and the traffic controller (the `Tandem-Ballot` header below), and the
//! newest one wins everywhere.

use crate::State;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// A counter and the node that took it. Ordered by counter, then by node id, so two nodes that
/// promote on opposite sides of a partition still hold different, ordered ballots.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ballot {
    pub epoch: i64,
    pub node_id: String,
}

impl Ballot {
    pub fn new(epoch: i64, node_id: impl Into<String>) -> Self {
        Self {
            epoch,
            node_id: node_id.into(),
        }
    }
}

impl Ord for Ballot {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.epoch, self.node_id.as_str()).cmp(&(other.epoch, other.node_id.as_str()))
    }
}

impl PartialOrd for Ballot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {} of node {}", self.epoch, self.node_id)
    }
}

/// The response header both guide probes carry (their bodies stay byte for byte the guide's).
pub const BALLOT_HEADER: &str = "tandem-ballot";

/// What a node says about itself on its probes: its epoch and id, its state, whether it is in
/// the HA group at all, and the newest ballot it knows an Active node to hold (its own when it
/// is Active; otherwise learned from its peers).
///
/// Header form: `epoch=3; node-id=ID; state=active; ha=enabled; newest-epoch=4;
/// newest-node-id=ID2` (the `newest-*` pair only when the node knows one). Unknown keys are
/// ignored, so later versions can add some.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeBallot {
    /// The node's own epoch and id. A claim to serve only while `state` is Active.
    pub own: Ballot,
    pub state: State,
    /// False: HA is disabled; the node runs standalone, outside the HA group, and its ballot
    /// counts for nothing in the group.
    pub ha_enabled: bool,
    pub newest: Option<Ballot>,
}

/// Node ids are UUIDs; a longer value is not one of ours.
const NODE_ID_CHARS_MAX: usize = 64;

impl ProbeBallot {
    /// The node's claim to serve: its own ballot, when it is Active in the HA group.
    pub fn claim(&self) -> Option<&Ballot> {
        (self.state == State::Active && self.ha_enabled).then_some(&self.own)
    }

    pub fn header_value(&self) -> String {
        let state = match self.state {
            State::Active => "active",
            State::Standby => "standby",
            State::NotAvailable => "not-available",
        };
        let mut value = format!(
            "epoch={}; node-id={}; state={state}; ha={}",
            self.own.epoch,
            self.own.node_id,
            if self.ha_enabled {
                "enabled"
            } else {
                "disabled"
            }
        );
        if let Some(newest) = &self.newest {
            value.push_str(&format!(
                "; newest-epoch={}; newest-node-id={}",
                newest.epoch, newest.node_id
            ));
        }
        value
    }

    /// Parses a header value; the error names the part that is wrong.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut epoch = None;
        let mut node_id = None;
        let mut state = None;
        let mut ha_enabled = None;
        let mut newest_epoch = None;
        let mut newest_node_id = None;
        for part in value.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, field) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not key=value"))?;
            match key {
                "epoch" => epoch = Some(parse_epoch(key, field)?),
                "node-id" => node_id = Some(parse_node_id(key, field)?),
                "newest-epoch" => newest_epoch = Some(parse_epoch(key, field)?),
                "newest-node-id" => newest_node_id = Some(parse_node_id(key, field)?),
                "state" => {
                    state = Some(match field {
                        "active" => State::Active,
                        "standby" => State::Standby,
                        "not-available" => State::NotAvailable,
                        other => return Err(format!("state `{other}` is not a node state")),
                    })
                }
                "ha" => {
                    ha_enabled = Some(match field {
                        "enabled" => true,
                        "disabled" => false,
                        other => return Err(format!("ha `{other}` is not enabled or disabled")),
                    })
                }
                _ => {}
            }
        }
        let missing = |key: &str| format!("`{key}` is missing");
        let newest = match (newest_epoch, newest_node_id) {
            (Some(epoch), Some(node_id)) => Some(Ballot { epoch, node_id }),
            (None, None) => None,
            _ => return Err("`newest-epoch` and `newest-node-id` come together".into()),
        };
        Ok(Self {
            own: Ballot {
                epoch: epoch.ok_or_else(|| missing("epoch"))?,
                node_id: node_id.ok_or_else(|| missing("node-id"))?,
            },
            state: state.ok_or_else(|| missing("state"))?,
            ha_enabled: ha_enabled.ok_or_else(|| missing("ha"))?,
            newest,
        })
    }
}

fn parse_epoch(key: &str, field: &str) -> Result<i64, String> {
    field
        .parse::<i64>()
        .ok()
        .filter(|epoch| *epoch >= 0)
        .ok_or_else(|| format!("{key} `{field}` is not a whole number of zero or more"))
}

fn parse_node_id(key: &str, field: &str) -> Result<String, String> {
    let valid = !field.is_empty()
        && field.len() <= NODE_ID_CHARS_MAX
        && field
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
    if valid {
        Ok(field.to_owned())
    } else {
        Err(format!(
            "{key} `{field}` is not a node id (letters, digits and '-', at most \
             {NODE_ID_CHARS_MAX})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_counter_then_node_id() {
        assert!(Ballot::new(4, "a") > Ballot::new(3, "z"));
        assert!(Ballot::new(3, "b") > Ballot::new(3, "a"));
        assert_eq!(Ballot::new(3, "a"), Ballot::new(3, "a"));
    }

    #[test]
    fn a_header_reads_back_as_written() {
        let probe = ProbeBallot {
            own: Ballot::new(3, "6f1c-a"),
            state: State::Active,
            ha_enabled: true,
            newest: Some(Ballot::new(4, "77-c")),
        };
        assert_eq!(
            probe.header_value(),
            "epoch=3; node-id=6f1c-a; state=active; ha=enabled; newest-epoch=4; newest-node-id=77-c"
        );
        assert_eq!(ProbeBallot::parse(&probe.header_value()), Ok(probe.clone()));
        let standby = ProbeBallot {
            state: State::NotAvailable,
            ha_enabled: false,
            newest: None,
            ..probe
        };
        assert_eq!(ProbeBallot::parse(&standby.header_value()), Ok(standby));
    }

    #[test]
    fn only_an_active_node_in_the_group_claims_its_ballot() {
        let mut probe = ProbeBallot {
            own: Ballot::new(3, "a"),
            state: State::Active,
            ha_enabled: true,
            newest: None,
        };
        assert_eq!(probe.claim(), Some(&Ballot::new(3, "a")));
        probe.ha_enabled = false;
        assert_eq!(probe.claim(), None);
        probe.ha_enabled = true;
        probe.state = State::Standby;
        assert_eq!(probe.claim(), None);
    }

    #[test]
    fn a_bad_header_names_the_part_that_is_wrong() {
        let cases = [
            ("epoch=x; node-id=a; state=active; ha=enabled", "epoch `x`"),
            (
                "epoch=-1; node-id=a; state=active; ha=enabled",
                "epoch `-1`",
            ),
            (
                "epoch=1; node-id=a b; state=active; ha=enabled",
                "node-id `a b`",
            ),
            ("epoch=1; node-id=a; state=up; ha=enabled", "state `up`"),
            ("epoch=1; node-id=a; state=active", "`ha` is missing"),
            ("epoch=1; node-id=a; state=active; ha=on", "ha `on`"),
            (
                "epoch=1; node-id=a; state=active; ha=enabled; newest-epoch=2",
                "come together",
            ),
            ("garbage", "`garbage` is not key=value"),
        ];
        for (value, expected) in cases {
            let error = ProbeBallot::parse(value).expect_err(value);
            assert!(error.contains(expected), "{value}: {error}");
        }
        // Unknown keys are for later versions.
        assert!(ProbeBallot::parse("epoch=1; node-id=a; state=active; ha=enabled; x=y").is_ok());
    }
}
