//! The HA controller's and the replication's gauges, read from the controller's snapshot at
//! each scrape (nothing is counted on the hot path for them).

use crate::ha::HaHandle;
use crate::state::AppState;
use tandem_ha::config::ReplicationMode;
use tandem_metrics::{Exposition, Kind, labels};

pub(super) fn render(out: &mut Exposition, state: &AppState, ha: &HaHandle) {
    let snapshot = ha.snapshot();
    render_node(out, &snapshot);
    render_cluster(out, &snapshot);
    render_replication(out, state, ha, &snapshot);
}

fn flag(value: bool) -> String {
    u8::from(value).to_string()
}

fn render_node(out: &mut Exposition, snapshot: &tandem_ha::machine::Snapshot) {
    let state = snapshot.status.state.to_string();
    out.family(
        "tandem_ha_state",
        Kind::Gauge,
        "1 for the state this node serves in.",
        ["Active", "Standby", "Not Available"]
            .iter()
            .map(|name| (labels(&[("state", *name)]), flag(state == *name))),
    );
    let mode = snapshot.config.mode;
    out.family(
        "tandem_ha_mode",
        Kind::Gauge,
        "1 for this node's configured Mode (Primary or Secondary).",
        [tandem_ha::Mode::Primary, tandem_ha::Mode::Secondary]
            .iter()
            .map(|each| (labels(&[("mode", each.to_string())]), flag(mode == *each))),
    );
    out.single(
        "tandem_ha_enabled",
        Kind::Gauge,
        "1 while HA is enabled on this node (it belongs to the HA group).",
        flag(snapshot.config.enabled),
    );
    out.single(
        "tandem_ha_epoch",
        Kind::Gauge,
        "The epoch this node holds.",
        snapshot.epoch,
    );
    out.single(
        "tandem_ha_fenced",
        Kind::Gauge,
        "1 while this node is fenced (Not Available until an operator acts).",
        flag(snapshot.fenced.is_some()),
    );
    out.single(
        "tandem_ha_heartbeat_consecutive_failures",
        Kind::Gauge,
        "Heartbeats to the Primary that failed in a row.",
        snapshot.heartbeat.consecutive_failures,
    );
    out.single(
        "tandem_ha_dual_active",
        Kind::Gauge,
        "1 while this node sees two nodes of the HA group Active at once (directly or by gossip).",
        flag(snapshot.dual_active.is_some()),
    );
    out.single(
        "tandem_ha_trust_incomplete",
        Kind::Gauge,
        "Nodes known only through another node's gossip, which this node cannot check itself.",
        snapshot.trust_warnings.len(),
    );
    render_schedule(out, snapshot);
}

fn render_schedule(out: &mut Exposition, snapshot: &tandem_ha::machine::Snapshot) {
    // Only where a schedule is what keeps this node current: a Standby with scheduled
    // replication. The "last successful sync" alert compares against it, so it applies there
    // and nowhere else.
    if snapshot.config.enabled
        && snapshot.config.replication == ReplicationMode::Scheduled
        && snapshot.status.state == tandem_ha::State::Standby
    {
        out.single(
            "tandem_ha_run_every_seconds",
            Kind::Gauge,
            "The sync schedule's Run Every, on a Standby that syncs by schedule.",
            snapshot.config.run_every.as_millis() as f64 / 1000.0,
        );
    }
}

fn render_cluster(out: &mut Exposition, snapshot: &tandem_ha::machine::Snapshot) {
    out.family(
        "tandem_ha_cluster_node_epoch",
        Kind::Gauge,
        "The epoch of every other node this node knows of, with its state and how it is known.",
        snapshot.cluster.iter().map(|member| {
            let source = if member.direct { "direct" } else { "gossip" };
            (
                labels(&[
                    ("node", member.node_name.clone()),
                    ("state", member.state.to_string()),
                    ("source", source.to_owned()),
                ]),
                member.epoch.to_string(),
            )
        }),
    );
}

fn render_replication(
    out: &mut Exposition,
    state: &AppState,
    ha: &HaHandle,
    snapshot: &tandem_ha::machine::Snapshot,
) {
    let head = state.db.head_seq();
    out.single(
        "tandem_replication_head_seq",
        Kind::Gauge,
        "Sequence number of the newest change-log entry on this node.",
        head,
    );
    // Only meaningful where a Standby follows this node: an Active node streaming to it.
    if snapshot.status.state == tandem_ha::State::Active
        && snapshot.config.replication != ReplicationMode::Scheduled
    {
        let holds = *ha.standby_holds().borrow();
        out.single(
            "tandem_replication_standby_behind_entries",
            Kind::Gauge,
            "Entries the following Standby does not hold yet.",
            (head - holds).max(0),
        );
    }
    let follower = ha.follower();
    if follower.source.is_empty() {
        return;
    }
    let lag = |value: Option<i64>| (value.unwrap_or(-1) as f64 / 1000.0).to_string();
    out.single(
        "tandem_replication_follower_connected",
        Kind::Gauge,
        "1 while this Standby's replication stream is open.",
        flag(follower.connected),
    );
    out.single(
        "tandem_replication_follower_position_seq",
        Kind::Gauge,
        "Sequence number of the newest entry this Standby holds.",
        follower.position_seq,
    );
    out.single(
        "tandem_replication_follower_applied_entries",
        Kind::Gauge,
        "Entries applied by the stream since the node started (a counter).",
        follower.applied_entries,
    );
    out.family(
        "tandem_replication_lag_seconds",
        Kind::Gauge,
        "Commit on the Primary to commit here: last batch, and p99 and max of recent batches (-0.001: none yet).",
        [
            ("last", lag(follower.last_lag_ms)),
            ("p99", lag(follower.recent_lag_p99_ms)),
            ("max", lag(follower.recent_lag_max_ms)),
        ]
        .into_iter()
        .map(|(window, value)| (labels(&[("window", window)]), value)),
    );
    out.single(
        "tandem_replication_behind",
        Kind::Gauge,
        "1 while the stream is down or the last lag exceeds the configured lag bound.",
        flag(crate::control::behind(&follower, snapshot.config.lag_bound).is_some()),
    );
}
