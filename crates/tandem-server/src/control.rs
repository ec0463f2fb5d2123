//! The operator's commands on the local node (`tandem ha …`, `tandem failover …`): carried out
//! by the running node through its control socket, or, for those that do not change what a
//! node serves, by the CLI itself when no node runs.

use crate::ha::{self, HaHandle};
use crate::state::DeviceGate;
use serde_json::{Value, json};
use std::sync::Arc;
use tandem_ha::Mode;
use tandem_ha::config::ConfigChange;
use tandem_ha::machine::{Controller, Guard, OperatorCommand, SyncOutcome};
use tandem_repl::Replication;
use tandem_repl::ops::{self, Event, FailureKind, Operation, Reporter};
use tandem_repl::protocol::{Request, Response, SwitchoverStep};
use tandem_repl::sync::SyncOptions;
use tandem_store::history::{self, Trigger};

/// The running node's executor.
pub struct NodeExecutor {
    pub replication: Replication,
    pub ha: HaHandle,
    pub device_gate: Arc<DeviceGate>,
    pub node_name: String,
}

fn failed(kind: FailureKind, message: impl Into<String>) -> Event {
    Event::Failed {
        kind,
        message: message.into(),
    }
}

/// The status every `tandem ha status` shows: the controller's view, plus this node's facts.
pub async fn status_json(
    replication: &Replication,
    snapshot: Option<tandem_ha::machine::Snapshot>,
    durable: &tandem_ha::machine::Durable,
    client_connections: Option<bool>,
    follower: Option<tandem_repl::follow::FollowStatus>,
) -> Value {
    let last_sync = replication
        .local()
        .database()
        .read(|conn| history::recent(conn, 1))
        .await
        .ok()
        .and_then(|rows| rows.into_iter().next());
    // An Active node is the source its Standbys follow: it is behind no one, whatever stream it
    // followed before it was promoted.
    let active = snapshot
        .as_ref()
        .is_some_and(|snapshot| snapshot.status.state == tandem_ha::State::Active);
    let follower = follower.filter(|_| !active);
    json!({
        "node": replication.node_name(),
        "replication": active.then_some("Active: the source"),
        "version": tandem_repl::protocol::software_version(),
        "running": snapshot.is_some(),
        "clientConnections": client_connections.map(|open| if open { "enabled" } else { "disabled" }),
        "controller": snapshot,
        "config": durable.config,
        "epoch": durable.epoch,
        "fenced": durable.fenced,
        "lastSync": last_sync,
        "behind": follower.as_ref().and_then(|follower| behind(follower, durable.config.lag_bound)),
        "follower": follower.filter(|follower| !follower.source.is_empty()),
        "position": {
            "headSeq": replication.replicated().head_seq(),
            "standbyHoldsSeq": *replication.follower_acked().borrow(),
        },
    })
}

/// Why a following Standby is behind: its stream is down or silent, it is still catching up,
/// or its last lag exceeds the bound. `None` while it is in step (or follows nothing).
pub fn behind(
    follower: &tandem_repl::follow::FollowStatus,
    bound: tandem_ha::config::Span,
) -> Option<String> {
    behind_at(follower, bound, crate::ha::wall_clock_ms())
}

/// [`behind`] at wall-clock `now` (ms).
pub fn behind_at(
    follower: &tandem_repl::follow::FollowStatus,
    bound: tandem_ha::config::Span,
    now: i64,
) -> Option<String> {
    if follower.source.is_empty() {
        return None;
    }
    if !follower.connected {
        return Some(format!(
            "the replication stream from {} is down{}",
            follower.source,
            follower
                .last_error
                .as_ref()
                .map(|error| format!(": {error}"))
                .unwrap_or_default()
        ));
    }
    let bound_ms = bound.as_millis() as i64;
    // The source answers at least every FOLLOW_WAIT_MAX (a long poll that found nothing).
    let silent_ms = now
        - follower
            .last_answer_at_ms
            .or(follower.connected_since_ms)
            .unwrap_or(now);
    let expected_ms = tandem_repl::source::FOLLOW_WAIT_MAX.as_millis() as i64;
    if silent_ms > expected_ms + bound_ms {
        return Some(format!(
            "{} has not answered for {silent_ms} ms (it answers at least every {expected_ms} ms)",
            follower.source
        ));
    }
    if !follower.complete {
        // A session that has not yet had an answer applied: after a restart or a cut, the
        // backlog may be hours long.
        return Some(match follower.in_step_at_ms {
            Some(at) => format!(
                "catching up with {}: it holds the source's writes up to {} ms ago",
                follower.source,
                now - at
            ),
            None => format!(
                "catching up with {}: not yet in step since this node started",
                follower.source
            ),
        });
    }
    // A slow batch matters only until the stream has caught up again. Lag compares the two
    // nodes' clocks, which the guide requires to agree (a skew over 2 s is warned about).
    follower
        .last_lag_ms
        .filter(|lag| *lag > bound_ms && !follower.caught_up)
        .map(|lag| {
            format!("the last batch arrived {lag} ms after its commit, over the {bound} bound")
        })
}

/// How late past the long poll an answer may come and the stream still count as in step now:
/// scheduling and a loopback or LAN round trip, far below any lag bound worth setting.
const ANSWER_GRACE_MS: i64 = 250;

/// What the HA controller needs of the follower (If Behind at Failure), at wall-clock `now`.
/// `following`: this node's runtime runs a follower.
pub fn replication_view(
    follower: &tandem_repl::follow::FollowStatus,
    following: bool,
    bound: tandem_ha::config::Span,
    now: i64,
) -> tandem_ha::machine::ReplicationView {
    let behind = if following {
        behind_at(follower, bound, now)
    } else {
        Some("this node does not follow a source".to_owned())
    };
    // In step now, as far as can be told: the session has had its answer, the next one is due
    // within the long poll (and a little), and the last batch came back within the bound. The
    // source's commit clock does not enter.
    let expected_ms = tandem_repl::source::FOLLOW_WAIT_MAX.as_millis() as i64 + ANSWER_GRACE_MS;
    let streaming = following
        && follower.connected
        && follower.complete
        && follower
            .last_answer_at_ms
            .is_some_and(|at| now - at <= expected_ms)
        && follower
            .last_round_trip_ms
            .is_none_or(|round_trip| round_trip <= bound.as_millis() as i64);
    tandem_ha::machine::ReplicationView {
        streaming,
        in_step_at_ms: follower.in_step_at_ms,
        answered_at_ms: follower.last_answer_at_ms,
        behind,
    }
}

impl ops::Executor for NodeExecutor {
    fn execute(
        &self,
        operation: Operation,
        report: Reporter,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let replication = self.replication.clone();
        let ha = self.ha.clone();
        let gate = self.device_gate.clone();
        let node_name = self.node_name.clone();
        Box::pin(async move {
            let event = match operation {
                Operation::HaStatus => {
                    let snapshot = ha.snapshot();
                    let durable = tandem_ha::machine::Durable {
                        config: snapshot.config.clone(),
                        epoch: snapshot.epoch,
                        fenced: snapshot.fenced.clone(),
                        schedule_anchor_ms: None,
                        followed_state: None,
                        held_epoch: None,
                    };
                    Event::Done {
                        result: status_json(
                            &replication,
                            Some(snapshot),
                            &durable,
                            Some(gate.is_open()),
                            Some(ha.follower()),
                        )
                        .await,
                    }
                }
                Operation::HaConfigure { change } => {
                    match checked_configure(&ha, change.clone()).await {
                        Ok(configured) => {
                            tracing::info!(
                                fields = ?crate::sysmgr::changed_fields(&change),
                                "HA configuration changed from the command line (control socket)"
                            );
                            Event::Done {
                                result: serde_json::to_value(configured).unwrap_or_default(),
                            }
                        }
                        // A role change refused for "one Active node" is not a usage error.
                        Err(error) if error.is_refusal() => {
                            failed(FailureKind::Refused, error.to_string())
                        }
                        Err(error @ ha::ConfigureError::Stopped) => {
                            failed(FailureKind::Failed, error.to_string())
                        }
                        Err(error) => failed(FailureKind::Usage, error.to_string()),
                    }
                }
                Operation::FailoverMode { mode, force } => {
                    let command = match mode {
                        Mode::Primary => OperatorCommand::ModePrimary,
                        Mode::Secondary => OperatorCommand::ModeSecondary,
                    };
                    let guard = if force { Guard::Forced } else { Guard::Checked };
                    match ha.operator(command, guard).await {
                        Ok(snapshot) => Event::Done {
                            result: serde_json::to_value(snapshot).unwrap_or_default(),
                        },
                        Err(message) => failed(FailureKind::Refused, message),
                    }
                }
                Operation::Switchover => match switchover(&replication, &ha).await {
                    Ok(result) => Event::Done { result },
                    Err((kind, message)) => {
                        replication
                            .log(&format!("switchover failed: {message}"))
                            .await;
                        failed(kind, message)
                    }
                },
                Operation::TestNotification => {
                    test_notification_running(replication.local(), &ha.snapshot(), &node_name).await
                }
                Operation::ClientConnection { enabled } => {
                    gate.set_open(enabled);
                    let message = if enabled {
                        format!("new device connections are enabled on {node_name}")
                    } else {
                        format!(
                            "new device connections are disabled on {node_name}; connections \
                             already open finish their requests"
                        )
                    };
                    replication.log(&message).await;
                    Event::Done {
                        result: json!({ "clientConnections": if enabled { "enabled" } else { "disabled" }, "message": message }),
                    }
                }
                users @ (Operation::UsersList { .. }
                | Operation::UsersAdd { .. }
                | Operation::UsersRemove { .. }
                | Operation::UsersSetPassword { .. }) => {
                    let status = ha.snapshot().status;
                    let writable = if status.accepts_writes() {
                        Ok(())
                    } else {
                        Err(crate::accounts::read_only_message(
                            &node_name,
                            &status.state.to_string(),
                            "",
                        ))
                    };
                    let caller = crate::accounts::Caller {
                        actor: "command line".into(),
                        source: format!("the control socket of {node_name}"),
                        writable,
                        local: replication.local().clone(),
                    };
                    crate::accounts::execute(replication.replicated(), &caller, &users)
                        .await
                        .unwrap_or_else(|| failed(FailureKind::Failed, "not an account operation"))
                }
                sync @ Operation::Sync { .. } => {
                    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
                    let forward = report.clone();
                    ops::execute(&replication, sync, move |event| {
                        if matches!(event, Event::Progress { .. }) {
                            forward(event);
                        } else {
                            let _ = sender.send(event);
                        }
                    })
                    .await;
                    let last = receiver.recv().await.unwrap_or_else(|| {
                        failed(FailureKind::Failed, "the sync ended without a result")
                    });
                    // A promotion later must go above the epoch the sync brought.
                    if let Event::Done { result } = &last
                        && let Some(epoch) = result.get("sourceEpoch").and_then(Value::as_i64)
                    {
                        ha.sync_finished(SyncOutcome::Succeeded {
                            summary: "manual sync".into(),
                            source_epoch: epoch,
                        });
                    }
                    last
                }
                other => {
                    let forward = report.clone();
                    ops::execute(&replication, other, move |event| forward(event)).await;
                    return;
                }
            };
            report(event);
        })
    }
}

/// Carries out `operation` in the CLI's process, for a node that is not running.
pub async fn execute_offline(
    replication: &Replication,
    node_id: &str,
    operation: Operation,
    report: Reporter,
) {
    if operation.needs_running_node() {
        report(failed(
            FailureKind::Failed,
            format!(
                "no node is running in {}; this command changes what a running node serves — \
                 start it with `tandem serve` first",
                replication.data_dir().display()
            ),
        ));
        return;
    }
    let log_epoch = replication
        .replicated()
        .read(tandem_store::changes::latest_epoch)
        .await
        .unwrap_or(1);
    match operation {
        Operation::HaStatus => {
            let event = match ha::load_durable(replication.local(), log_epoch).await {
                Ok(durable) => Event::Done {
                    result: status_json(replication, None, &durable, None, None).await,
                },
                Err(error) => failed(FailureKind::Failed, error.to_string()),
            };
            report(event);
        }
        Operation::HaConfigure { change } => {
            let durable = match ha::load_durable(replication.local(), log_epoch).await {
                Ok(durable) => durable,
                Err(error) => return report(failed(FailureKind::Failed, error.to_string())),
            };
            let mut controller = Controller::new(node_id, durable);
            let now = tandem_ha::machine::Now {
                monotonic_ms: 0,
                wall_ms: tandem_clock::wall_clock_ms(),
            };
            if let Err(error) =
                crate::witness::check_change(&controller.durable().config, &change).await
            {
                return report(failed(FailureKind::Usage, error.to_string()));
            }
            let configured = controller
                .durable()
                .config
                .with(&change)
                .and_then(|(config, _)| controller.configure(now, config));
            let event = match configured {
                Err(error) => failed(FailureKind::Usage, error.to_string()),
                Ok((warnings, _)) => {
                    match ha::save_durable(replication.local(), controller.durable()).await {
                        Ok(()) => {
                            replication
                                .log("HA configuration saved (node not running; applies when it starts)")
                                .await;
                            Event::Done {
                                result: json!({
                                    "warnings": warnings,
                                    "running": false,
                                    "config": controller.durable().config,
                                    "epoch": controller.durable().epoch,
                                }),
                            }
                        }
                        Err(error) => failed(FailureKind::Failed, error.to_string()),
                    }
                }
            };
            report(event);
        }
        Operation::TestNotification => {
            let event = match ha::load_durable(replication.local(), log_epoch).await {
                Ok(durable) => {
                    let about = (replication.node_name(), "not running", durable.epoch);
                    test_notification(replication.local(), &durable.config, about).await
                }
                Err(error) => failed(FailureKind::Failed, error.to_string()),
            };
            report(event);
        }
        users @ (Operation::UsersList { .. }
        | Operation::UsersAdd { .. }
        | Operation::UsersRemove { .. }
        | Operation::UsersSetPassword { .. }) => {
            let writable = match ha::load_durable(replication.local(), log_epoch).await {
                Ok(durable) => offline_writable(replication.node_name(), &durable),
                Err(error) => Err(error.to_string()),
            };
            let caller = crate::accounts::Caller {
                actor: "command line".into(),
                source: format!(
                    "the command line of {} (node stopped)",
                    replication.node_name()
                ),
                writable,
                local: replication.local().clone(),
            };
            let event = crate::accounts::execute(replication.replicated(), &caller, &users)
                .await
                .unwrap_or_else(|| failed(FailureKind::Failed, "not an account operation"));
            report(event);
        }
        other => {
            let forward = report.clone();
            ops::execute(replication, other, move |event| forward(event)).await;
        }
    }
}

/// Whether a stopped node may change accounts: only one that would serve as the Active node
/// when started (HA disabled, a Primary, or a Secondary set Active) and is not fenced. A
/// Standby's accounts come from its Primary; a write here would diverge from it.
fn offline_writable(node_name: &str, durable: &tandem_ha::machine::Durable) -> Result<(), String> {
    let config = &durable.config;
    let standby = config.enabled
        && config.mode == Mode::Secondary
        && config.node_status == tandem_ha::config::NodeStatusSetting::Standby;
    if let Some(reason) = &durable.fenced {
        return Err(format!(
            "node {node_name} is fenced ({reason}) and read-only: accounts are replicated from the \
             Active node; change them there"
        ));
    }
    if standby {
        return Err(crate::accounts::read_only_message(
            node_name,
            "a Standby",
            "",
        ));
    }
    Ok(())
}

/// The Test on a running node: its configuration and state as they are now.
pub async fn test_notification_running(
    local: &tandem_store::NodeStore,
    snapshot: &tandem_ha::machine::Snapshot,
    node_name: &str,
) -> Event {
    let state = snapshot.status.state.to_string();
    let about = (node_name, state.as_str(), snapshot.epoch);
    test_notification(local, &snapshot.config, about).await
}

/// The Notification Settings' Test: one e-mail, sent now (not queued), with the relay's answer.
pub async fn test_notification(
    local: &tandem_store::NodeStore,
    config: &tandem_ha::config::HaConfig,
    (node_name, state, epoch): (&str, &str, i64),
) -> Event {
    use crate::notify::{self, Mail};
    let mail = Mail::compose(
        node_name,
        tandem_ha::machine::Notification::Test,
        "This is a test of the HA notification e-mail. If you read it, notifications from this \
         node reach you.",
        state,
        epoch,
    );
    let outcome = notify::send(config, &mail).await;
    let (level, line) = match &outcome {
        Ok(relay) => (
            "INFO",
            format!(
                "test: e-mailed to {} through {relay}",
                config.notify_email.join(", ")
            ),
        ),
        Err(error) => ("WARN", format!("test: not e-mailed: {error}")),
    };
    if let Err(error) = local.log(notify::NOTIFICATIONS_MODULE, level, &line).await {
        tracing::warn!(%error, "cannot record a notification");
    }
    match outcome {
        Ok(relay) => Event::Done {
            result: json!({ "to": config.notify_email, "relay": relay }),
        },
        Err(error) if error.is_configuration() => failed(FailureKind::Usage, error.to_string()),
        Err(error) => failed(FailureKind::Failed, error.to_string()),
    }
}

type Failure = (FailureKind, String);

/// Save and Apply on the running node, after the checks the pure configuration cannot make
/// (files it names): `tandem ha configure`, the API and the portal all come through here.
pub(crate) async fn checked_configure(
    ha: &HaHandle,
    change: ConfigChange,
) -> Result<ha::Configured, ha::ConfigureError> {
    crate::witness::check_change(&ha.snapshot().config, &change).await?;
    ha.configure(change).await
}

fn refused(message: impl Into<String>) -> Failure {
    (FailureKind::Refused, message.into())
}

/// One switchover step sent to the Primary; its final position and epoch.
async fn step(
    session: &mut tandem_repl::Session,
    step: SwitchoverStep,
) -> Result<(i64, String, i64), Failure> {
    let answer = tandem_repl::sync::request(
        &mut session.connection.stream,
        &session.endpoint,
        &Request::Switchover { step },
    )
    .await
    .map_err(|error| (FailureKind::Failed, error.to_string()))?;
    match answer {
        Response::Switchover {
            position_seq,
            position_checksum,
            epoch,
        } => Ok((position_seq, position_checksum, epoch)),
        Response::Refused { reason } => Err(refused(format!(
            "{} refused the switchover: {reason}",
            session.peer.node_name
        ))),
        other => Err((
            FailureKind::Failed,
            format!("{} answered {other:?}", session.endpoint),
        )),
    }
}

/// `tandem ha switchover`, run on the Standby: the Primary stops taking device connections and
/// writes, this node syncs to its final position, takes a new epoch and becomes the Active
/// Primary, and the old Primary becomes its Standby. Any failure before the promotion gives the
/// Primary its writes back; nothing acknowledged is lost either way.
async fn switchover(replication: &Replication, ha: &HaHandle) -> Result<Value, Failure> {
    let started = std::time::Instant::now();
    let snapshot = ha.snapshot();
    let config = &snapshot.config;
    if !config.enabled
        || config.mode != Mode::Secondary
        || snapshot.status.state != tandem_ha::State::Standby
    {
        return Err(refused(format!(
            "a switchover is run on the Standby Secondary; this node is {} ({}, HA {})",
            snapshot.status.state,
            snapshot.status.mode,
            if config.enabled {
                "enabled"
            } else {
                "disabled"
            }
        )));
    }
    // The configuration holds the parsed address: the one the heartbeats use.
    let Some(endpoint) = config.primary.clone() else {
        return Err(refused("this node has no Primary configured"));
    };
    let primary = endpoint.to_string();
    let mut session = replication
        .open_session(&endpoint)
        .await
        .map_err(|error| (FailureKind::Failed, error.to_string()))?;
    let old_primary = session.peer.node_name.clone();
    replication
        .log(&format!(
            "switchover with {old_primary} ({primary}) started"
        ))
        .await;
    let (seq, checksum, epoch) = step(&mut session, SwitchoverStep::Quiesce).await?;
    let synced = async {
        let summary = tandem_repl::sync::run(
            replication,
            &endpoint,
            SyncOptions {
                trigger: Trigger::Manual,
                force_full: false,
            },
            Arc::new(|_| {}),
        )
        .await
        .map_err(|error| format!("the final sync failed: {error}"))?;
        let ours = replication
            .replicated()
            .read(tandem_store::changes::position)
            .await
            .map_err(|error| error.to_string())?;
        if ours.seq != seq || ours.checksum != checksum {
            return Err(format!(
                "after the final sync this node is at change {} but {old_primary} is at {seq}",
                ours.seq
            ));
        }
        Ok(summary)
    }
    .await;
    let summary = match synced {
        Ok(summary) => summary,
        Err(reason) => {
            let resumed = step(&mut session, SwitchoverStep::Resume).await;
            return Err((
                FailureKind::Failed,
                format!(
                    "{reason}; {}",
                    match resumed {
                        Ok(_) => format!("{old_primary} serves on as before"),
                        Err((_, error)) => format!(
                            "{old_primary} could not be told to resume ({error}); it reopens by \
                             itself within {} s",
                            crate::ha::SWITCHOVER_HOLD_MAX.as_secs()
                        ),
                    }
                ),
            ));
        }
    };
    ha.sync_finished(SyncOutcome::Succeeded {
        summary: "switchover final sync".into(),
        source_epoch: epoch,
    });
    // The old Primary is still Active, but its writes and device connections are closed and
    // everything it acknowledged is here: the one case where entering Active beside it is safe,
    // so the "one Active node" refusal is overridden.
    let promoted = ha
        .configure(ConfigChange {
            mode: Some(Mode::Primary),
            force: true,
            ..ConfigChange::default()
        })
        .await;
    if let Err(error) = promoted {
        let _ = step(&mut session, SwitchoverStep::Resume).await;
        return Err((FailureKind::Failed, format!("promotion failed: {error}")));
    }
    let new_epoch = ha.snapshot().epoch;
    let demoted = step(&mut session, SwitchoverStep::Demote).await;
    let warning = demoted.as_ref().err().map(|(_, error)| {
        format!(
            "{old_primary} was not told to step down ({error}); it keeps its writes closed and \
             fences itself when it learns of epoch {new_epoch}"
        )
    });
    let message = format!(
        "switchover done: this node is the Active Primary in epoch {new_epoch}; {old_primary} \
         is {} ({} change(s) in the final sync, {} ms)",
        if demoted.is_ok() {
            "its Standby"
        } else {
            "not confirmed as Standby"
        },
        summary.entries,
        started.elapsed().as_millis()
    );
    replication.log(&message).await;
    Ok(json!({
        "oldPrimary": old_primary,
        "epoch": new_epoch,
        "positionSeq": seq,
        "finalSyncEntries": summary.entries,
        "durationMs": started.elapsed().as_millis() as i64,
        "oldPrimaryDemoted": demoted.is_ok(),
        "warning": warning,
        "message": message,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_ha::config::Span;
    use tandem_repl::follow::FollowStatus;

    const NOW: i64 = 1_800_000_000_000;

    fn connected() -> FollowStatus {
        FollowStatus {
            source: "10.0.0.1:2222".into(),
            connected: true,
            connected_since_ms: Some(NOW - 60_000),
            last_answer_at_ms: Some(NOW - 200),
            complete: true,
            caught_up: true,
            in_step_at_ms: Some(NOW - 200),
            ..FollowStatus::default()
        }
    }

    #[test]
    fn a_stream_is_in_step_only_once_the_source_said_nothing_more_in_this_session() {
        let bound = Span::from_secs(5);
        let kind = |why: Option<String>| crate::probes::behind_kind(&why.unwrap_or_default());
        let view = replication_view(&connected(), true, bound, NOW);
        assert!(view.streaming && view.behind.is_none(), "{view:?}");
        assert_eq!(view.in_step_at_ms, Some(NOW - 200));

        // Just reconnected after a restart: no answer yet, so not in step, however fresh the
        // session looks.
        let restarted = FollowStatus {
            complete: false,
            caught_up: false,
            last_answer_at_ms: None,
            connected_since_ms: Some(NOW - 10),
            in_step_at_ms: None,
            ..connected()
        };
        let view = replication_view(&restarted, true, bound, NOW);
        assert!(!view.streaming, "{view:?}");
        assert_eq!(view.in_step_at_ms, None);
        let why = view.behind.clone().unwrap_or_default();
        assert!(
            why.contains("not yet in step since this node started"),
            "{why}"
        );
        assert_eq!(kind(view.behind), "catching up");

        // Catching up a backlog after a cut: in step as of the last complete answer.
        let catching_up = FollowStatus {
            complete: false,
            in_step_at_ms: Some(NOW - 90_000),
            ..connected()
        };
        let view = replication_view(&catching_up, true, bound, NOW);
        assert!(!view.streaming);
        assert_eq!(view.in_step_at_ms, Some(NOW - 90_000));
        let why = view.behind.unwrap_or_default();
        assert!(why.contains("up to 90000 ms ago"), "{why}");

        // Down, silent, or slow: behind, each with its reason and its kind.
        let down = FollowStatus {
            connected: false,
            last_error: Some("connection refused".into()),
            ..connected()
        };
        let why = behind_at(&down, bound, NOW);
        assert!(
            why.as_deref()
                .is_some_and(|why| why.contains("is down: connection refused"))
        );
        assert_eq!(kind(why), "stream down");
        let silent = FollowStatus {
            last_answer_at_ms: Some(NOW - 7_000),
            ..connected()
        };
        let why = behind_at(&silent, bound, NOW);
        assert!(
            why.as_deref()
                .is_some_and(|why| why.contains("has not answered for 7000 ms"))
        );
        assert_eq!(kind(why), "source silent");
        let slow = FollowStatus {
            caught_up: false,
            last_lag_ms: Some(6_000),
            ..connected()
        };
        let why = behind_at(&slow, bound, NOW);
        assert!(
            why.as_deref()
                .is_some_and(|why| why.contains("6000 ms after its commit"))
        );
        assert_eq!(kind(why), "lagging");
        // Not streaming once an answer is late past the long poll, though not yet "behind"
        // (that waits for the lag bound), nor after a batch took longer than the bound.
        let late = FollowStatus {
            last_answer_at_ms: Some(NOW - 2_000),
            ..connected()
        };
        let view = replication_view(&late, true, bound, NOW);
        assert!(!view.streaming && view.behind.is_none(), "{view:?}");
        let slow_batch = FollowStatus {
            last_round_trip_ms: Some(6_000),
            ..connected()
        };
        assert!(!replication_view(&slow_batch, true, bound, NOW).streaming);
        // A node whose runtime follows nothing is never streaming.
        assert!(!replication_view(&connected(), false, bound, NOW).streaming);
    }
}
