//! The live sections beside the form: HA Status on a Primary, Node Status on a Secondary.

use crate::console::chrome::Badge;
use crate::console::time::{relative_ms as relative, utc_ms as utc_time};
use crate::ha::HaHandle;
use crate::state::AppState;
use tandem_ha::Mode;
use tandem_ha::config::ReplicationMode;
use tandem_ha::machine::Snapshot;

/// One line of a status section: a term, its text, and a badge when it is a state.
pub(in crate::console::system_manager) struct Fact {
    pub term: &'static str,
    pub detail: String,
    pub badge: Option<Badge>,
}

impl Fact {
    pub(in crate::console::system_manager) fn text(
        term: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            term,
            detail: detail.into(),
            badge: None,
        }
    }

    pub(in crate::console::system_manager) fn state(
        term: &'static str,
        state: &str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            term,
            detail: detail.into(),
            badge: Some(Badge::of_state(state, false)),
        }
    }
}

/// A Secondary that follows this Primary (HA Status).
pub(in crate::console::system_manager) struct FollowerRow {
    pub name: String,
    pub address: String,
    pub badge: Badge,
    pub epoch: i64,
    pub seen: String,
}

/// The live section beside the form.
pub(in crate::console::system_manager) enum StatusSection {
    /// HA disabled: nothing follows and nothing is followed.
    Standalone,
    /// On a Primary: the Secondaries following it, and how far behind the stream is.
    HaStatus {
        followers: Vec<FollowerRow>,
        facts: Vec<Fact>,
    },
    /// On a Secondary: its Primary, the heartbeat, the schedule.
    NodeStatus { facts: Vec<Fact> },
}

impl StatusSection {
    pub fn is_primary(&self) -> bool {
        matches!(self, StatusSection::HaStatus { .. })
    }

    pub fn is_secondary(&self) -> bool {
        matches!(self, StatusSection::NodeStatus { .. })
    }

    pub fn facts(&self) -> &[Fact] {
        match self {
            StatusSection::Standalone => &[],
            StatusSection::HaStatus { facts, .. } | StatusSection::NodeStatus { facts } => facts,
        }
    }

    pub fn followers(&self) -> &[FollowerRow] {
        match self {
            StatusSection::HaStatus { followers, .. } => followers,
            _ => &[],
        }
    }
}

/// What the status sections read besides the controller's snapshot.
pub(in crate::console::system_manager) struct Live {
    pub follower: tandem_repl::follow::FollowStatus,
    pub head_seq: i64,
    pub standby_holds_seq: i64,
    pub last_sync: Option<tandem_store::history::SyncRecord>,
}

impl Live {
    pub(in crate::console::system_manager) async fn read(state: &AppState, ha: &HaHandle) -> Self {
        let last_sync = state
            .local
            .database()
            .read(|conn| tandem_store::history::recent(conn, 1))
            .await
            .ok()
            .and_then(|rows| rows.into_iter().next());
        Self {
            follower: ha.follower(),
            head_seq: state.db.head_seq(),
            standby_holds_seq: *ha.standby_holds().borrow(),
            last_sync,
        }
    }
}

pub(in crate::console::system_manager) fn status_section(
    snapshot: &Snapshot,
    live: &Live,
    now_ms: i64,
) -> StatusSection {
    if !snapshot.config.enabled {
        return StatusSection::Standalone;
    }
    match snapshot.config.mode {
        Mode::Primary => ha_status(snapshot, live, now_ms),
        Mode::Secondary => StatusSection::NodeStatus {
            facts: node_status(snapshot, live, now_ms),
        },
    }
}

fn ha_status(snapshot: &Snapshot, live: &Live, now_ms: i64) -> StatusSection {
    let followers = snapshot
        .cluster
        .iter()
        .filter(|member| member.mode == Mode::Secondary && member.direct)
        .map(|member| FollowerRow {
            name: member.node_name.clone(),
            address: member.address.clone().unwrap_or_else(|| "-".into()),
            badge: Badge::of_state(&member.state.to_string(), false),
            epoch: member.epoch,
            seen: relative(member.seen_at_ms, now_ms),
        })
        .collect();
    let mut facts = Vec::new();
    if let Some(seen) = snapshot.peer_seen_ms {
        facts.push(Fact::text(
            "Last heartbeat received",
            format!("{} ({})", utc_time(seen), relative(seen, now_ms)),
        ));
    }
    if snapshot.config.replication == ReplicationMode::Scheduled {
        facts.push(Fact::text(
            "Replication",
            "scheduled: each Secondary syncs on its own StartTime / Run Every (its Sync History \
             has the details)",
        ));
    } else {
        let behind = (live.head_seq - live.standby_holds_seq).max(0);
        facts.push(Fact::text(
            "Standby lag",
            format!(
                "{}: the Standby holds change {} of {} ({behind} behind)",
                snapshot.config.replication, live.standby_holds_seq, live.head_seq
            ),
        ));
    }
    if let Some(skew) = snapshot.clock_skew_ms {
        facts.push(clock_fact(skew, snapshot.clock_skew_warning));
    }
    StatusSection::HaStatus { followers, facts }
}

fn clock_fact(skew_ms: i64, warning: bool) -> Fact {
    Fact::text(
        "Clock offset to peer",
        if warning {
            format!("{skew_ms} ms: over 2 s; both servers need the same time (NTP)")
        } else {
            format!("{skew_ms} ms")
        },
    )
}

fn node_status(snapshot: &Snapshot, live: &Live, now_ms: i64) -> Vec<Fact> {
    let config = &snapshot.config;
    let heartbeat = &snapshot.heartbeat;
    let mut facts = vec![match &snapshot.peer {
        Some(peer) => Fact::state(
            "Primary",
            &peer.state.to_string(),
            format!(
                "{} at {} ({}, epoch {})",
                peer.node_name,
                config.primary_text().unwrap_or_default(),
                peer.mode,
                peer.epoch
            ),
        ),
        None => Fact::text(
            "Primary",
            format!(
                "{}: not heard from yet",
                config.primary_text().unwrap_or_else(|| "none set".into())
            ),
        ),
    }];
    facts.push(Fact::text(
        "Last heartbeat answered",
        heartbeat
            .last_ok_ms
            .map(|at| format!("{} ({})", utc_time(at), relative(at, now_ms)))
            .unwrap_or_else(|| "never since this node started".into()),
    ));
    facts.push(Fact::text(
        "Consecutive failures",
        format!(
            "{} of {} before failover{}",
            heartbeat.consecutive_failures,
            config.heartbeat_failures,
            heartbeat
                .last_error
                .as_ref()
                .map(|error| format!("; last error: {error}"))
                .unwrap_or_default()
        ),
    ));
    if heartbeat.failure_detected {
        facts.push(Fact::text(
            "Failure detected",
            format!(
                "the Primary missed its heartbeats; If Failure Detected: {}",
                config.on_failure
            ),
        ));
    }
    if let Some(why) = &snapshot.promotion_held {
        facts.push(Fact::text(
            "Promotion held",
            format!(
                "{why}. If the Primary does not return, promote this node with `tandem failover \
                 mode primary`."
            ),
        ));
    }
    facts.extend(replication_facts(snapshot, live, now_ms));
    if let Some(skew) = snapshot.clock_skew_ms {
        facts.push(clock_fact(skew, snapshot.clock_skew_warning));
    }
    facts
}

fn replication_facts(snapshot: &Snapshot, live: &Live, now_ms: i64) -> Vec<Fact> {
    let mut facts = Vec::new();
    if let Some(next) = snapshot.next_sync_ms {
        facts.push(Fact::text(
            "Next sync",
            format!("{} ({})", utc_time(next), relative(next, now_ms)),
        ));
    }
    if !live.follower.source.is_empty() {
        let lag = live
            .follower
            .last_lag_ms
            .map(|lag| format!("last lag {lag} ms"))
            .unwrap_or_else(|| "no batch yet".into());
        facts.push(Fact::text(
            "Replication stream",
            format!(
                "{} from {}: holds change {}; {lag}",
                if live.follower.connected {
                    "connected"
                } else {
                    "DISCONNECTED"
                },
                live.follower.source,
                live.follower.position_seq
            ),
        ));
    }
    if let Some(why) = crate::control::behind(&live.follower, snapshot.config.lag_bound) {
        facts.push(Fact::text("Behind", why));
    }
    facts.push(last_sync_fact(live.last_sync.as_ref()));
    facts
}

pub(in crate::console::system_manager) fn last_sync_fact(
    last: Option<&tandem_store::history::SyncRecord>,
) -> Fact {
    Fact::text(
        "Last sync",
        match last {
            Some(sync) => format!(
                "{} UTC from {}: {} {}{}",
                crate::console::time::utc_stored(&sync.started_at),
                sync.source,
                sync.kind.as_deref().unwrap_or(&sync.trigger),
                sync.result,
                sync.error
                    .as_ref()
                    .map(|error| format!(" ({error})"))
                    .unwrap_or_default()
            ),
            None => "none yet".into(),
        },
    )
}
