//! The operator's commands on the local node (`tandem ha …`, `tandem failover …`): carried out
//! by the running node through its control socket, or, for those that do not change what a
//! node serves, by the CLI itself when no node runs.

use crate::ha::{self, HaHandle};
use crate::state::DeviceGate;
use serde_json::{Value, json};
use std::sync::Arc;
use tandem_ha::Mode;
use tandem_ha::machine::{Controller, OperatorCommand, SyncOutcome};
use tandem_repl::Replication;
use tandem_repl::ops::{self, Event, FailureKind, Operation, Reporter};
use tandem_store::history;

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
) -> Value {
    let last_sync = replication
        .local()
        .database()
        .read(|conn| history::recent(conn, 1))
        .await
        .ok()
        .and_then(|rows| rows.into_iter().next());
    json!({
        "node": replication.node_name(),
        "version": tandem_repl::protocol::software_version(),
        "running": snapshot.is_some(),
        "clientConnections": client_connections.map(|open| if open { "enabled" } else { "disabled" }),
        "controller": snapshot,
        "config": durable.config,
        "epoch": durable.epoch,
        "fenced": durable.fenced,
        "lastSync": last_sync,
    })
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
                    };
                    Event::Done {
                        result: status_json(
                            &replication,
                            Some(snapshot),
                            &durable,
                            Some(gate.is_open()),
                        )
                        .await,
                    }
                }
                Operation::HaConfigure { change } => match ha.configure(change).await {
                    Ok(configured) => Event::Done {
                        result: serde_json::to_value(configured).unwrap_or_default(),
                    },
                    Err(message) => failed(FailureKind::Usage, message),
                },
                Operation::FailoverMode { mode } => {
                    let command = match mode {
                        Mode::Primary => OperatorCommand::ModePrimary,
                        Mode::Secondary => OperatorCommand::ModeSecondary,
                    };
                    match ha.operator(command).await {
                        Ok(snapshot) => Event::Done {
                            result: serde_json::to_value(snapshot).unwrap_or_default(),
                        },
                        Err(message) => failed(FailureKind::Refused, message),
                    }
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
                    result: status_json(replication, None, &durable, None).await,
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
                wall_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_millis() as i64)
                    .unwrap_or(0),
            };
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
        other => {
            let forward = report.clone();
            ops::execute(replication, other, move |event| forward(event)).await;
        }
    }
}
