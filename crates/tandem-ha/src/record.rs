//! The third party's record that keeps synchronous replication's promise through a cut link.
//!
//! With synchronous replication and the continuous fallback, a Primary that loses its Standby
//! goes on acknowledging writes without it after the synchronous timeout. If the Standby, not
//! knowing, promotes itself, those writes are lost. So neither acts alone (as Patroni records
//! its synchronous standby in its DCS before dropping it): the Primary may stop waiting only
//! once a witness has recorded that it does, and the Standby may promote itself only once the
//! same witness has recorded the promotion, which it refuses while the Primary's record stands.
//! Each witness holds one [`Register`]; the first record wins, so both cannot.

use crate::ballot::Ballot;
use serde::{Deserialize, Serialize};

/// What a node asks a witness to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RecordKind {
    /// The Primary holding `primary` acknowledges writes without its Standby from now on.
    Degrade,
    /// That Primary's Standby confirms every write again: the record is cleared.
    Recover,
    /// The Standby takes over from the Primary holding `primary`.
    Promote,
}

/// The body of `POST` to a witness's URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordRequest {
    pub record: RecordKind,
    /// The Primary's ballot the record is about.
    pub primary: Ballot,
    /// The asking node's name, for the record and the logs.
    pub node: String,
    /// Which fallback of that Primary a `Degrade` starts and a `Recover` ends (the head when it
    /// began): a late `Recover` of an earlier fallback must not clear a later one.
    #[serde(default)]
    pub generation: i64,
}

/// A witness's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordAnswer {
    pub granted: bool,
    /// Why not, when not granted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A `Recover` with this generation clears the Primary's fallback record whatever its
/// generation: sent by a Primary that restarted and cannot know it (a crash while it had fallen
/// back leaves the record standing).
pub const RECOVER_ANY_GENERATION: i64 = -1;

/// What a witness remembers (durably: the traffic controller keeps it in its state file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Record {
    Degraded {
        primary: Ballot,
        #[serde(default)]
        generation: i64,
        by: String,
        at_ms: i64,
    },
    Promoting {
        over: Ballot,
        by: String,
        at_ms: i64,
    },
}

/// A witness's one register (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    pub record: Option<Record>,
}

impl Register {
    /// Records `request` at `now_ms` if it is compatible with what is recorded; otherwise the
    /// reason. Returns whether the register changed (to be saved) with the answer.
    pub fn request(&mut self, now_ms: i64, request: &RecordRequest) -> (bool, RecordAnswer) {
        let refuse = |reason: String| {
            (
                false,
                RecordAnswer {
                    granted: false,
                    reason,
                },
            )
        };
        let grant = RecordAnswer {
            granted: true,
            reason: String::new(),
        };
        let primary = &request.primary;
        let degraded = |request: &RecordRequest| Record::Degraded {
            primary: request.primary.clone(),
            generation: request.generation,
            by: request.node.clone(),
            at_ms: now_ms,
        };
        match (request.record, &self.record) {
            // Every request about an older ballot than the one recorded is stale: it comes from
            // a superseded Primary, or arrived late.
            (RecordKind::Degrade, Some(Record::Promoting { over, by, at_ms }))
                if over >= primary =>
            {
                refuse(format!(
                    "{by} recorded at {at_ms} (ms since 1970) its promotion over {over}: this \
                     Primary must not acknowledge writes without it"
                ))
            }
            (
                RecordKind::Degrade,
                Some(Record::Degraded {
                    primary: held, by, ..
                }),
            ) if held > primary => {
                refuse(format!("{by}, a newer Primary ({held}), holds the record"))
            }
            (
                RecordKind::Degrade,
                Some(Record::Degraded {
                    primary: held,
                    generation,
                    ..
                }),
            ) if held == primary && *generation == request.generation => (false, grant),
            (RecordKind::Degrade, _) => {
                self.record = Some(degraded(request));
                (true, grant)
            }
            (
                RecordKind::Recover,
                Some(Record::Degraded {
                    primary: held,
                    generation,
                    ..
                }),
            ) if held == primary
                && (*generation == request.generation
                    || request.generation == RECOVER_ANY_GENERATION) =>
            {
                self.record = None;
                (true, grant)
            }
            (RecordKind::Recover, _) => (false, grant),
            (
                RecordKind::Promote,
                Some(Record::Degraded {
                    primary: held,
                    by,
                    at_ms,
                    ..
                }),
            ) if held >= primary => refuse(format!(
                "{by} (the Primary, {held}) recorded at {at_ms} (ms since 1970) that it \
                     acknowledges writes without its Standby: this node may lack them"
            )),
            (RecordKind::Promote, Some(Record::Promoting { over, by, .. })) if over > primary => {
                refuse(format!(
                    "{by} recorded a promotion over a newer ballot ({over}) than {primary}"
                ))
            }
            (RecordKind::Promote, Some(Record::Promoting { over, .. })) if over == primary => {
                (false, grant)
            }
            (RecordKind::Promote, _) => {
                self.record = Some(Record::Promoting {
                    over: primary.clone(),
                    by: request.node.clone(),
                    at_ms: now_ms,
                });
                (true, grant)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(register: &mut Register, record: RecordKind, epoch: i64, node: &str) -> RecordAnswer {
        register
            .request(
                1_000,
                &RecordRequest {
                    record,
                    primary: Ballot::new(epoch, "id-a"),
                    node: node.into(),
                    generation: 7,
                },
            )
            .1
    }

    #[test]
    fn the_first_record_wins_between_a_primary_that_degrades_and_a_standby_that_promotes() {
        let mut register = Register::default();
        assert!(ask(&mut register, RecordKind::Degrade, 3, "node-a").granted);
        let refused = ask(&mut register, RecordKind::Promote, 3, "node-b");
        assert!(!refused.granted);
        assert!(refused.reason.contains("node-a"), "{}", refused.reason);
        // Once the Standby confirms again the record is cleared, and a later failure may promote.
        assert!(ask(&mut register, RecordKind::Recover, 3, "node-a").granted);
        assert!(ask(&mut register, RecordKind::Promote, 3, "node-b").granted);
        // Now the old Primary may not go on without its Standby.
        let refused = ask(&mut register, RecordKind::Degrade, 3, "node-a");
        assert!(
            !refused.granted && refused.reason.contains("node-b recorded at"),
            "{}",
            refused.reason
        );
        // A newer Primary (the promoted node, in a new epoch) may.
        assert!(ask(&mut register, RecordKind::Degrade, 4, "node-b").granted);
    }

    #[test]
    fn repeating_a_record_is_granted_and_changes_nothing() {
        let mut register = Register::default();
        let request = RecordRequest {
            record: RecordKind::Degrade,
            primary: Ballot::new(3, "id-a"),
            node: "node-a".into(),
            generation: 7,
        };
        assert!(register.request(1, &request).0);
        assert!(!register.request(2, &request).0);
        assert!(register.request(2, &request).1.granted);
        // A recover of another ballot clears nothing.
        let other = RecordRequest {
            record: RecordKind::Recover,
            primary: Ballot::new(2, "id-a"),
            ..request
        };
        assert!(register.request(3, &other).1.granted);
        assert!(register.record.is_some());
    }

    #[test]
    fn stale_requests_about_older_ballots_or_earlier_fallbacks_change_nothing() {
        let mut register = Register::default();
        let request = |record, epoch, generation| RecordRequest {
            record,
            primary: Ballot::new(epoch, "id-a"),
            node: "node".into(),
            generation,
        };
        assert!(
            register
                .request(1, &request(RecordKind::Degrade, 4, 10))
                .1
                .granted
        );
        // A superseded Primary's late fallback does not replace the newer one's record.
        let (changed, answer) = register.request(2, &request(RecordKind::Degrade, 3, 99));
        assert!(!changed && !answer.granted, "{answer:?}");
        // A late recover of an earlier fallback clears nothing.
        register.request(3, &request(RecordKind::Recover, 4, 9));
        assert!(
            !register
                .request(4, &request(RecordKind::Promote, 4, 0))
                .1
                .granted
        );
        // The matching one does.
        register.request(5, &request(RecordKind::Recover, 4, 10));
        assert!(
            register
                .request(6, &request(RecordKind::Promote, 4, 0))
                .1
                .granted
        );
        // A promotion over an older ballot than one recorded is refused.
        assert!(
            !register
                .request(7, &request(RecordKind::Promote, 3, 0))
                .1
                .granted
        );
    }
}
