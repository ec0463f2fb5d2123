//! Unit tests of the HA controller: each feeds events and compares the commands emitted.

use super::*;
use crate::config::{ConfigChange, OnBehind, OnStandbyLost, ReplicationMode, Span};

const PRIMARY: &str = "primary.example:2222";
const HOUR: i64 = 3_600_000;
/// 2026-11-22 00:00:00 UTC.
const DAY0: i64 = 1_795_305_600_000;

fn at(ms: u64) -> Now {
    Now {
        monotonic_ms: ms,
        wall_ms: DAY0 + 14 * HOUR + ms as i64,
    }
}

fn secondary() -> HaConfig {
    HaConfig::default()
        .with(&ConfigChange {
            enabled: Some(true),
            mode: Some(Mode::Secondary),
            primary: Some(PRIMARY.into()),
            ..Default::default()
        })
        .unwrap()
        .0
}

fn primary() -> HaConfig {
    HaConfig {
        enabled: true,
        ..HaConfig::default()
    }
}

fn peer(name: &str, mode: Mode, state: State, epoch: i64, now: Now) -> PeerView {
    PeerView {
        replication: None,
        on_standby_lost: None,
        synchronous_timeout: None,
        acknowledging_without_standby: None,
        known: Vec::new(),
        fail_over_controls: None,
        node_name: name.into(),
        node_id: format!("id-{name}"),
        ha_enabled: true,
        mode,
        state,
        epoch,
        wall_clock_ms: now.wall_ms,
    }
}

fn serve(state: State, mode: Mode, epoch: i64, primary: Option<&str>) -> Command {
    Command::Serve {
        status: NodeStatus {
            ha_enabled: true,
            mode,
            state,
        },
        epoch,
        primary: primary.map(str::to_owned),
    }
}

/// The commands without log lines and peer checks (the tests that care about logs look at them
/// directly; those about peer checks use [`acts_and_checks`]): every HA node checks its peers
/// each heartbeat interval, which would fill every other test's expectations.
fn acts(commands: Vec<Command>) -> Vec<Command> {
    acts_and_checks(commands)
        .into_iter()
        .filter(|command| !matches!(command, Command::CheckPeers))
        .collect()
}

/// The commands without log lines.
fn acts_and_checks(commands: Vec<Command>) -> Vec<Command> {
    commands
        .into_iter()
        .filter(|command| !matches!(command, Command::Log { .. }))
        .collect()
}

fn logs(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|command| match command {
            Command::Log { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn started_standby() -> Controller {
    let mut controller = Controller::new("id-self", Durable::new(secondary(), 1));
    let commands = acts(controller.handle(at(0), Event::Started));
    assert_eq!(
        commands,
        vec![serve(State::Standby, Mode::Secondary, 1, Some(PRIMARY))]
    );
    controller
}

fn heartbeat(controller: &mut Controller, now: Now) {
    assert_eq!(
        acts(controller.handle(now, Event::Tick)),
        vec![Command::SendHeartbeat { to: PRIMARY.into() }],
        "a heartbeat is due at {now:?}"
    );
}

fn fail(controller: &mut Controller, now: Now) -> Vec<Command> {
    controller.handle(
        now,
        Event::HeartbeatFailed {
            reason: "connection refused".into(),
        },
    )
}

#[test]
fn a_standby_heartbeats_its_primary_every_heartbeat_interval() {
    let mut controller = started_standby();
    heartbeat(&mut controller, at(0));
    assert_eq!(
        acts(controller.handle(at(1), Event::Tick)),
        vec![],
        "one at a time"
    );
    let answered = controller.handle(
        at(20),
        Event::HeartbeatAnswered(peer("node-a", Mode::Primary, State::Active, 1, at(20))),
    );
    // The first answer records, durably, that the followed node serves (Active).
    let mut remembered = controller.durable().clone();
    remembered.followed_state = Some(State::Active);
    assert_eq!(acts(answered.clone()), vec![Command::Persist(remembered)]);
    assert!(
        logs(&answered)[0].starts_with("heartbeat to node-a: Primary Active in epoch 1"),
        "every heartbeat is in the HighAvailability log: {answered:?}"
    );
    assert_eq!(acts(controller.handle(at(10_019), Event::Tick)), vec![]);
    heartbeat(&mut controller, at(10_020));
}

#[test]
fn consecutive_failures_rechecked_then_promoted_table_1_row_2() {
    let mut controller = started_standby();
    heartbeat(&mut controller, at(0));
    assert_eq!(acts(fail(&mut controller, at(5))), vec![]);
    // Re-check interval (5 s) after a failure, not Heartbeat Interval.
    assert_eq!(acts(controller.handle(at(5_004), Event::Tick)), vec![]);
    heartbeat(&mut controller, at(5_005));
    assert_eq!(acts(fail(&mut controller, at(5_010))), vec![]);
    heartbeat(&mut controller, at(10_010));
    let commands = fail(&mut controller, at(10_020));
    let mut promoted = secondary();
    promoted.node_status = NodeStatusSetting::Active;
    let mut durable = Durable::new(promoted, 2);
    durable.schedule_anchor_ms = controller.durable().schedule_anchor_ms;
    let acts = acts(commands.clone());
    assert!(matches!(
        &acts[0],
        Command::Notify {
            notification: Notification::FailureDetected,
            ..
        }
    ));
    assert_eq!(
        acts[1],
        Command::Persist(durable),
        "the epoch is durable first"
    );
    assert_eq!(acts[2], serve(State::Active, Mode::Secondary, 2, None));
    assert!(matches!(
        &acts[3],
        Command::Notify {
            notification: Notification::BecamePrimary,
            ..
        }
    ));
    assert_eq!(acts.len(), 4);
    assert!(
        logs(&commands)
            .iter()
            .any(|line| line.contains("heartbeat 3 of 3"))
    );
    assert_eq!(controller.status().state, State::Active);
    assert_eq!(controller.epoch(), 2);
}

#[test]
fn a_success_resets_the_count_of_consecutive_failures() {
    let mut controller = started_standby();
    let mut now = 0;
    for round in 0..3 {
        for _ in 0..2 {
            heartbeat(&mut controller, at(now));
            assert_eq!(
                acts(fail(&mut controller, at(now + 1))),
                vec![],
                "round {round}"
            );
            now += 5_001;
        }
        heartbeat(&mut controller, at(now));
        controller.handle(
            at(now + 1),
            Event::HeartbeatAnswered(peer("node-a", Mode::Primary, State::Active, 1, at(now))),
        );
        now += 10_001;
    }
    assert_eq!(controller.status().state, State::Standby);
}

#[test]
fn keep_in_standby_detects_and_notifies_but_does_not_promote() {
    let mut config = secondary();
    config.on_failure = OnFailure::Standby;
    let mut controller = Controller::new("id-self", Durable::new(config, 1));
    controller.handle(at(0), Event::Started);
    let last = fail_three_times(&mut controller, 0);
    let now = THREE_FAILURES_MS;
    assert_eq!(
        acts(last.clone()),
        vec![Command::Notify {
            notification: Notification::FailureDetected,
            message: format!(
                "failure detected: {PRIMARY} missed 3 consecutive heartbeats (last error: \
                 connection refused); If Failure Detected is Keep in Standby"
            ),
        }]
    );
    assert!(
        logs(&last)
            .iter()
            .any(|line| line.contains("stays Standby"))
    );
    assert_eq!(controller.status().state, State::Standby);
    // It keeps checking, and says nothing new until the Primary answers again.
    heartbeat(&mut controller, at(now));
    assert_eq!(acts(fail(&mut controller, at(now + 1))), vec![]);
    assert_eq!(controller.status().state, State::Standby);
}

#[test]
fn a_restarted_primary_asks_its_peers_and_is_fenced_by_a_newer_epoch_table_1_row_3() {
    let mut controller = Controller::new("id-self", Durable::new(primary(), 1));
    let commands = acts_and_checks(controller.handle(at(0), Event::Started));
    assert_eq!(
        commands,
        vec![
            serve(
                State::NotAvailable,
                Mode::Primary,
                1,
                Some("this node is asking its trusted peers before it serves")
            ),
            Command::CheckPeers
        ],
        "nothing is served before the peers answered"
    );
    let commands = acts(controller.handle(
        at(30),
        Event::PeerSeen(peer("node-b", Mode::Secondary, State::Active, 2, at(30))),
    ));
    let reason = "node-b is Active in epoch 2, newer than this node's epoch 1";
    let mut durable = controller.durable().clone();
    assert_eq!(durable.fenced.as_deref(), Some(reason));
    assert_eq!(commands[0], Command::Persist(durable.clone()));
    assert_eq!(
        commands[1],
        serve(State::NotAvailable, Mode::Primary, 1, Some(reason))
    );
    assert!(matches!(
        commands[2],
        Command::Notify {
            notification: Notification::Fenced,
            ..
        }
    ));
    assert_eq!(acts(controller.handle(at(40), Event::PeersChecked)), vec![]);
    assert_eq!(controller.status().state, State::NotAvailable);

    // After another restart it stays Not Available without asking.
    durable.schedule_anchor_ms = None;
    let mut restarted = Controller::new("id-self", durable);
    assert_eq!(
        acts(restarted.handle(at(0), Event::Started)),
        vec![serve(State::NotAvailable, Mode::Primary, 1, Some(reason))]
    );
}

#[test]
fn a_restarted_primary_serves_once_no_peer_holds_a_newer_epoch() {
    let mut controller = Controller::new("id-self", Durable::new(primary(), 3));
    controller.handle(at(0), Event::Started);
    controller.handle(
        at(10),
        Event::PeerSeen(peer("node-b", Mode::Secondary, State::Standby, 3, at(10))),
    );
    assert_eq!(
        acts(controller.handle(at(20), Event::PeersChecked)),
        vec![serve(State::Active, Mode::Primary, 3, None)]
    );
}

#[test]
fn an_active_node_steps_down_when_an_active_peer_has_a_newer_epoch() {
    let mut controller = Controller::new("id-self", Durable::new(primary(), 1));
    controller.handle(at(0), Event::Started);
    controller.handle(at(1), Event::PeersChecked);
    assert_eq!(controller.status().state, State::Active);
    // A Standby with a newer epoch does not fence, nor does an Active peer that loses the tie.
    let quiet = controller.handle(
        at(2),
        Event::PeerSeen(peer("node-s", Mode::Secondary, State::Standby, 5, at(2))),
    );
    assert_eq!(acts(quiet), vec![]);
    let mut lower = peer("node-0", Mode::Secondary, State::Active, 1, at(2));
    lower.node_id = "id-a".into();
    // It loses the tie and will step down itself; meanwhile two nodes are Active: the alarm.
    let alarm = acts(controller.handle(at(2), Event::PeerSeen(lower)));
    assert!(
        matches!(&alarm[..], [Command::Notify { notification: Notification::DualActive, message }]
            if message.contains("this node (epoch 1) and node-0 (epoch 1)")),
        "{alarm:?}"
    );
    assert_eq!(controller.status().state, State::Active);
    let commands = acts(controller.handle(
        at(3),
        Event::PeerSeen(peer("node-b", Mode::Secondary, State::Active, 2, at(3))),
    ));
    assert!(matches!(commands[0], Command::Persist(_)));
    assert_eq!(controller.status().state, State::NotAvailable);
}

#[test]
fn failover_mode_primary_takes_an_epoch_above_every_epoch_seen_and_is_repeatable() {
    let mut controller = Controller::new("id-self", Durable::new(primary(), 1));
    controller.handle(at(0), Event::Started);
    controller.handle(
        at(1),
        Event::PeerSeen(peer("node-b", Mode::Secondary, State::Active, 4, at(1))),
    );
    assert_eq!(controller.status().state, State::NotAvailable);
    // node-b was Active a moment ago: refused with the reason and the fix, unless forced.
    let refusal = controller
        .operator(at(2), OperatorCommand::ModePrimary)
        .unwrap_err();
    assert!(
        refusal.starts_with("refused: node-b is Active in epoch 4 (seen 1 ms ago)")
            && refusal.contains("tandem ha switchover")
            && refusal.contains("--force"),
        "{refusal}"
    );
    assert_eq!(controller.status().state, State::NotAvailable);
    let commands = acts(
        controller
            .operator_with(at(2), OperatorCommand::ModePrimary, Guard::Forced)
            .unwrap(),
    );
    assert!(
        matches!(&commands[0], Command::Persist(durable) if durable.epoch == 5 && durable.fenced.is_none())
    );
    assert_eq!(commands[1], serve(State::Active, Mode::Primary, 5, None));
    let again = acts(
        controller
            .operator(at(3), OperatorCommand::ModePrimary)
            .unwrap(),
    );
    assert_eq!(again, vec![Command::Persist(controller.durable().clone())]);
    assert_eq!(controller.epoch(), 5, "repeating it changes nothing");
}

#[test]
fn failover_mode_secondary_returns_to_standby_without_re_anchoring_the_schedule() {
    let mut controller = started_standby();
    let next = controller.snapshot().next_sync_ms;
    assert!(next.is_some());
    controller
        .operator(at(1), OperatorCommand::ModePrimary)
        .unwrap();
    assert_eq!(controller.status().state, State::Active);
    // The only Active node: refused, unless forced.
    let refusal = controller
        .operator(at(2), OperatorCommand::ModeSecondary)
        .unwrap_err();
    assert!(
        refusal.contains("the only Active node of the HA group"),
        "{refusal}"
    );
    let commands = acts(
        controller
            .operator_with(at(2), OperatorCommand::ModeSecondary, Guard::Forced)
            .unwrap(),
    );
    assert_eq!(
        commands[1],
        serve(State::Standby, Mode::Secondary, 2, Some(PRIMARY))
    );
    assert_eq!(controller.snapshot().next_sync_ms, next);
    let mut orphan = Controller::new("id-self", Durable::new(primary(), 1));
    orphan.handle(at(0), Event::Started);
    let error = orphan
        .operator(at(1), OperatorCommand::ModeSecondary)
        .unwrap_err();
    assert!(error.contains("--primary"), "{error}");
}

#[test]
fn the_guides_start_time_example_and_run_every() {
    // StartTime 1:00 pm GMT, saved at 2:00 pm: the first sync is at 1:00 pm the next day, then
    // every Run Every.
    let mut controller = started_standby();
    let mut config = secondary();
    config.start_time = "13:00".parse().unwrap();
    config.run_every = Span::from_minutes(120);
    let saved = at(0);
    assert_eq!(saved.wall_ms, DAY0 + 14 * HOUR);
    controller.configure(saved, config).unwrap();
    let first = DAY0 + 24 * HOUR + 13 * HOUR;
    assert_eq!(controller.snapshot().next_sync_ms, Some(first));
    let wall = |ms: i64| Now {
        monotonic_ms: 1_000_000_000,
        wall_ms: ms,
    };
    // Heartbeats are not the point here: keep one in flight so ticks show only the schedule.
    controller.handle(wall(first - 1), Event::Tick);
    assert_eq!(
        acts(controller.handle(wall(first - 1), Event::Tick)),
        vec![]
    );
    assert_eq!(
        acts(controller.handle(wall(first), Event::Tick)),
        vec![Command::StartSync {
            from: PRIMARY.into(),
            trigger: SyncTrigger::Scheduled
        }]
    );
    assert_eq!(controller.snapshot().next_sync_ms, Some(first + 2 * HOUR));
    // Still running two hours later: skipped and recorded, never overlapped.
    let commands = acts(controller.handle(wall(first + 2 * HOUR), Event::Tick));
    assert!(
        matches!(&commands[..], [Command::SkipSync { .. }]),
        "{commands:?}"
    );
    controller.handle(
        wall(first + 2 * HOUR + 5),
        Event::SyncFinished {
            trigger: SyncTrigger::Scheduled,
            outcome: SyncOutcome::Succeeded {
                summary: "incremental".into(),
                source_epoch: 1,
            },
        },
    );
    assert_eq!(
        acts(controller.handle(wall(first + 4 * HOUR), Event::Tick)),
        vec![Command::StartSync {
            from: PRIMARY.into(),
            trigger: SyncTrigger::Scheduled
        }]
    );
}

#[test]
fn saving_re_anchors_the_schedule_but_a_restart_does_not() {
    let mut controller = started_standby();
    let mut config = secondary();
    config.start_time = "13:00".parse().unwrap();
    // Saved at 12:00: today at 13:00.
    let noon = Now {
        monotonic_ms: 0,
        wall_ms: DAY0 + 12 * HOUR,
    };
    controller.configure(noon, config).unwrap();
    assert_eq!(controller.snapshot().next_sync_ms, Some(DAY0 + 13 * HOUR));
    let durable = controller.durable().clone();
    let mut restarted = Controller::new("id-self", durable);
    let later = Now {
        monotonic_ms: 0,
        wall_ms: DAY0 + 15 * HOUR + 30 * 60_000,
    };
    restarted.handle(later, Event::Started);
    assert_eq!(
        restarted.snapshot().next_sync_ms,
        Some(DAY0 + 16 * HOUR),
        "counts from the saved anchor, every hour"
    );
}

#[test]
fn an_active_node_does_not_sync_on_the_schedule() {
    let mut controller = started_standby();
    controller
        .operator(at(0), OperatorCommand::ModePrimary)
        .unwrap();
    let far = Now {
        monotonic_ms: 0,
        wall_ms: DAY0 + 100 * HOUR,
    };
    assert!(
        !acts(controller.handle(far, Event::Tick))
            .iter()
            .any(|command| matches!(command, Command::StartSync { .. }))
    );
}

#[test]
fn a_witness_that_still_reaches_the_primary_prevents_promotion() {
    let mut config = secondary();
    config.witnesses = vec!["http://127.0.0.1:9444/witness/primary".parse().unwrap()];
    let mut controller = Controller::new("id-self", Durable::new(config, 1));
    controller.handle(at(0), Event::Started);
    let last = acts(fail_three_times(&mut controller, 0));
    let mut now = THREE_FAILURES_MS;
    assert_eq!(
        last[1],
        Command::AskWitnesses {
            primary: PRIMARY.into(),
            record_over: None,
        }
    );
    assert_eq!(
        acts(controller.handle(at(now), Event::Tick)),
        vec![],
        "no heartbeat while asking"
    );
    let commands = controller.handle(
        at(now),
        Event::WitnessesAnswered {
            reaching_primary: Some("lb".into()),
            promotion: PromotionRecord::NotAsked,
        },
    );
    assert!(logs(&commands)[0].contains("only the link between this node and the Primary failed"));
    assert_eq!(controller.status().state, State::Standby);
    // Three more failures ask again; this time no witness reaches the Primary.
    fail_three_times(&mut controller, now);
    now += THREE_FAILURES_MS;
    let commands = acts(controller.handle(
        at(now),
        Event::WitnessesAnswered {
            reaching_primary: None,
            promotion: PromotionRecord::NotAsked,
        },
    ));
    assert!(matches!(&commands[0], Command::Persist(durable) if durable.epoch == 2));
    assert_eq!(controller.status().state, State::Active);
}

#[test]
fn clock_skew_over_two_seconds_warns_once_until_it_recovers() {
    let mut controller = started_standby();
    heartbeat(&mut controller, at(0));
    let mut skewed = peer("node-a", Mode::Primary, State::Active, 1, at(0));
    skewed.wall_clock_ms += 2_500;
    let commands = acts(controller.handle(at(0), Event::HeartbeatAnswered(skewed.clone())));
    // (The first answer also records the followed node's state: the Persist.)
    assert!(matches!(
        &commands[..],
        [
            Command::Persist(_),
            Command::Notify {
                notification: Notification::ClockSkew,
                ..
            }
        ]
    ));
    assert!(controller.snapshot().clock_skew_warning);
    heartbeat(&mut controller, at(10_000));
    skewed.wall_clock_ms += 10_000;
    assert_eq!(
        acts(controller.handle(at(10_000), Event::HeartbeatAnswered(skewed))),
        vec![]
    );
}

#[test]
fn an_active_secondary_is_fenced_by_its_primary_after_failback() {
    let mut controller = started_standby();
    controller
        .operator(at(0), OperatorCommand::ModePrimary)
        .unwrap();
    // Made Secondary-mode Active again by configuration (the promoted Secondary keeps
    // heartbeating its configured Primary to exchange epochs).
    let mut config = secondary();
    config.node_status = NodeStatusSetting::Active;
    controller.configure(at(1), config).unwrap();
    assert_eq!(controller.status().state, State::Active);
    let epoch = controller.epoch();
    // Promoted at 0: the next heartbeat one Heartbeat Interval later.
    assert_eq!(acts(controller.handle(at(9_999), Event::Tick)), vec![]);
    heartbeat(&mut controller, at(10_000));
    let commands = acts(controller.handle(
        at(10_003),
        Event::HeartbeatAnswered(peer(
            "node-a",
            Mode::Primary,
            State::Active,
            epoch + 1,
            at(10_003),
        )),
    ));
    // The fence is persisted before anything is served differently.
    let fenced_at = commands.iter().position(
        |command| matches!(command, Command::Persist(durable) if durable.fenced.is_some()),
    );
    let served_at = commands
        .iter()
        .position(|command| matches!(command, Command::Serve { .. }));
    assert!(fenced_at.is_some() && fenced_at < served_at, "{commands:?}");
    assert_eq!(controller.status().state, State::NotAvailable);
}

#[test]
fn disabling_ha_on_a_standby_leaves_the_group_without_taking_a_ballot() {
    // The guide's upgrade, step 1: the Secondary leaves the HA group and serves standalone in the
    // epoch it has, so it fences no one and no peer counts it as Active.
    let mut controller = started_standby();
    let mut config = secondary();
    config.enabled = false;
    let (_, commands) = controller.configure(at(1), config).unwrap();
    assert!(
        logs(&commands)
            .iter()
            .any(|line| line.starts_with("HA disabled: this node left the HA group")),
        "{commands:?}"
    );
    let commands = acts(commands);
    assert!(matches!(&commands[0], Command::Persist(durable) if durable.epoch == 1));
    assert_eq!(
        commands[1],
        Command::Serve {
            status: NodeStatus {
                ha_enabled: false,
                mode: Mode::Secondary,
                state: State::Active
            },
            epoch: 1,
            primary: None
        }
    );
    assert_eq!(controller.probe_ballot().claim(), None);
    // Made Primary while out of the group (the guide's upgrade, step 4): still no ballot.
    controller
        .operator(at(2), OperatorCommand::ModePrimary)
        .unwrap();
    assert_eq!(controller.epoch(), 1);
    // Back in the group as a Secondary: a Standby again, in the same epoch.
    let mut config = secondary();
    config.enabled = true;
    controller.configure(at(3), config).unwrap();
    assert_eq!(controller.status().state, State::Standby);
    assert_eq!(controller.epoch(), 1);
}

#[test]
fn a_sync_remembers_the_sources_epoch_for_the_next_promotion() {
    let mut controller = started_standby();
    let commands = acts(controller.handle(
        at(1),
        Event::SyncFinished {
            trigger: SyncTrigger::Manual,
            outcome: SyncOutcome::Succeeded {
                summary: "full".into(),
                source_epoch: 7,
            },
        },
    ));
    assert!(matches!(&commands[0], Command::Persist(durable) if durable.epoch == 7));
    controller
        .operator(at(2), OperatorCommand::ModePrimary)
        .unwrap();
    assert_eq!(controller.epoch(), 8);
}

#[test]
fn two_nodes_active_in_the_same_epoch_counter_resolve_by_node_id() {
    let mut controller = Controller::new("id-m", Durable::new(primary(), 2));
    controller.handle(at(0), Event::Started);
    controller.handle(at(1), Event::PeersChecked);
    let mut tie = peer("node-z", Mode::Secondary, State::Active, 2, at(2));
    tie.node_id = "id-z".into();
    let commands = controller.handle(at(2), Event::PeerSeen(tie));
    assert_eq!(controller.status().state, State::NotAvailable);
    assert!(logs(&commands)[0].contains("wins the tie"), "{commands:?}");
}

#[test]
fn a_dr_node_does_not_promote_when_the_node_it_follows_was_only_a_standby() {
    // node-c follows node-b, which answers as a Standby of node-a (the three-server scenario).
    let mut controller = started_standby();
    heartbeat(&mut controller, at(0));
    let standby = peer("node-b", Mode::Secondary, State::Standby, 1, at(0));
    let answered = acts(controller.handle(at(1), Event::HeartbeatAnswered(standby)));
    assert!(
        matches!(&answered[..], [Command::Persist(durable)] if durable.followed_state == Some(State::Standby))
    );
    // node-b stops answering: detected and notified, but no promotion (node-a still serves).
    let all = fail_three_times(&mut controller, 10_001);
    assert!(all.iter().any(|command| matches!(
        command,
        Command::Notify {
            notification: Notification::FailureDetected,
            ..
        }
    )));
    assert!(
        !all.iter()
            .any(|command| matches!(command, Command::Serve { .. }))
    );
    assert!(
        logs(&all)
            .iter()
            .any(|line| line.contains("it was not serving devices"))
    );
    assert_eq!(controller.status().state, State::Standby);

    // The same node restarted remembers it (durably) and still does not promote.
    let mut restarted = Controller::new("node-c-id", controller.durable().clone());
    restarted.handle(at(0), Event::Started);
    let all = fail_three_times(&mut restarted, 1);
    assert!(all.iter().any(|command| matches!(
        command,
        Command::Notify {
            notification: Notification::FailureDetected,
            ..
        }
    )));
    assert!(!all.iter().any(
        |command| matches!(command, Command::Serve { status, .. } if status.state == State::Active)
    ));
}

#[test]
fn a_node_promoted_by_hand_keeps_heartbeating_and_fences_the_old_primary() {
    // Keep in Standby, the operator promotes: the node is Primary mode but still tells its old
    // Primary about the new epoch, so a partition's other side learns it after the heal.
    let mut controller = started_standby();
    controller
        .operator(at(0), OperatorCommand::ModePrimary)
        .unwrap();
    assert_eq!(controller.status().state, State::Active);
    assert_eq!(controller.status().mode, Mode::Primary);
    let commands = controller.handle(at(10_000), Event::Tick);
    assert!(
        commands
            .iter()
            .any(|command| matches!(command, Command::SendHeartbeat { to } if to == "primary.example:2222")),
        "{commands:?}"
    );
    // It does not sync on the schedule though: it is Active.
    assert!(
        !commands
            .iter()
            .any(|command| matches!(command, Command::StartSync { .. }))
    );
}

#[test]
fn continuous_replication_follows_while_standby_and_replaces_the_schedule() {
    let mut config = secondary();
    config.replication = crate::config::ReplicationMode::Continuous;
    let mut controller = Controller::new("id-self", Durable::new(config, 1));
    let started = controller.handle(at(0), Event::Started);
    assert_eq!(
        acts(started),
        vec![
            serve(State::Standby, Mode::Secondary, 1, Some(PRIMARY)),
            Command::Follow {
                from: Some(PRIMARY.into())
            }
        ]
    );
    // A whole day of ticks: heartbeats, but never a scheduled sync, and no second Follow.
    let mut all = Vec::new();
    for minute in 1..=24 * 60 {
        let now = at(minute * 60_000);
        all.extend(controller.handle(now, Event::Tick));
        all.extend(controller.handle(
            now,
            Event::HeartbeatAnswered(peer("node-a", Mode::Primary, State::Active, 1, now)),
        ));
    }
    assert!(!all.iter().any(|command| matches!(
        command,
        Command::StartSync { .. } | Command::SkipSync { .. } | Command::Follow { .. }
    )));
    // The source's epoch is remembered durably, as after a sync.
    let epoch = acts(controller.handle(at(1), Event::SourceEpoch(4)));
    assert!(matches!(&epoch[..], [Command::Persist(durable)] if durable.epoch == 4));
    // Promotion stops following, before anything else happens on the next step (forced: the
    // Primary answered a moment ago).
    let promoted = acts(
        controller
            .operator_with(at(2), OperatorCommand::ModePrimary, Guard::Forced)
            .unwrap(),
    );
    assert_eq!(promoted.last(), Some(&Command::Follow { from: None }));
    assert_eq!(controller.epoch(), 5);
}

#[test]
fn a_replication_mode_that_differs_from_the_peers_is_warned_about_once() {
    let mut config = primary();
    config.replication = crate::config::ReplicationMode::Synchronous;
    let mut controller = Controller::new("id-self", Durable::new(config, 1));
    controller.handle(at(0), Event::Started);
    controller.handle(at(1), Event::PeersChecked);
    assert_eq!(controller.status().state, State::Active);
    let mut scheduled = peer("node-b", Mode::Secondary, State::Standby, 1, at(2));
    scheduled.replication = Some(crate::config::ReplicationMode::Scheduled);
    let warned = controller.handle(at(2), Event::PeerSeen(scheduled.clone()));
    let lines = logs(&warned);
    assert!(
        lines
            .iter()
            .any(|line| line.contains("node-b replicates scheduled")
                && line.contains("every write waits")),
        "{warned:?}"
    );
    assert!(
        warned
            .iter()
            .any(|command| matches!(command, Command::Notify { .. }))
    );
    // Once, not at every heartbeat.
    let again = controller.handle(at(3), Event::PeerSeen(scheduled.clone()));
    assert!(
        !again
            .iter()
            .any(|command| matches!(command, Command::Notify { .. }))
    );
    // Fixed, then broken again: warned again.
    let mut synchronous = scheduled.clone();
    synchronous.replication = Some(crate::config::ReplicationMode::Synchronous);
    controller.handle(at(4), Event::PeerSeen(synchronous));
    let rewarned = controller.handle(at(5), Event::PeerSeen(scheduled));
    assert!(
        rewarned
            .iter()
            .any(|command| matches!(command, Command::Notify { .. }))
    );
}

/// A Standby following its Primary with `replication` (and `adjust` applied), started at 0, its
/// first heartbeat answered at 10 ms (the next one is due at 10,010 ms).
fn following(replication: ReplicationMode, adjust: impl FnOnce(&mut HaConfig)) -> Controller {
    let mut config = secondary();
    config.replication = replication;
    adjust(&mut config);
    let mut controller = Controller::new("id-self", Durable::new(config, 1));
    controller.handle(at(0), Event::Started);
    heartbeat_answered(&mut controller, 0);
    controller
}

/// A heartbeat sent at `sent_ms` (one must be due then), answered by the Active Primary 10 ms
/// later.
fn heartbeat_answered(controller: &mut Controller, sent_ms: u64) {
    heartbeat(controller, at(sent_ms));
    let answered = at(sent_ms + 10);
    controller.handle(
        answered,
        Event::HeartbeatAnswered(peer("node-a", Mode::Primary, State::Active, 1, answered)),
    );
}

/// Three failed heartbeats from `from_ms` (one must be due then), one Re-check interval (5 s)
/// apart; every command of the three steps (the last is the failure detection). The next
/// heartbeat is due `THREE_FAILURES_MS` after `from_ms`.
fn fail_three_times(controller: &mut Controller, from_ms: u64) -> Vec<Command> {
    let mut all = Vec::new();
    for attempt in 0..3 {
        let sent = from_ms + attempt * 5_005;
        heartbeat(controller, at(sent));
        all.extend(fail(controller, at(sent + 5)));
    }
    all
}

/// From the first of [`fail_three_times`]'s heartbeats to the next one due.
const THREE_FAILURES_MS: u64 = 3 * 5_005;

fn promoted(commands: &[Command]) -> bool {
    commands.iter().any(|command| {
        matches!(
            command,
            Command::Notify {
                notification: Notification::BecamePrimary,
                ..
            }
        )
    })
}

fn held(commands: &[Command]) -> Option<String> {
    commands.iter().find_map(|command| match command {
        Command::Notify {
            notification: Notification::PromotionHeld,
            message,
        } => Some(message.clone()),
        _ => None,
    })
}

/// The runtime's report of the follower at `ms`: in step up to `in_step_at` (ms of the test
/// clock), streaming or not, and why not.
fn replication(controller: &mut Controller, ms: u64, in_step_at: Option<u64>, why: Option<&str>) {
    let view = ReplicationView {
        in_step_at_ms: in_step_at.map(|at_ms| at(at_ms).wall_ms),
        streaming: why.is_none(),
        answered_at_ms: in_step_at.map(|at_ms| at(at_ms).wall_ms),
        behind: why.map(str::to_owned),
    };
    let commands = controller.handle(at(ms), Event::Replication(view));
    assert_eq!(
        acts(commands),
        vec![],
        "the replication state alone changes nothing"
    );
}

#[test]
fn a_continuous_standby_in_step_when_the_primary_last_answered_promotes() {
    let mut controller = following(ReplicationMode::Continuous, |_| {});
    // The runtime reports the follower before each heartbeat result.
    replication(&mut controller, 10_015, Some(10_015), None);
    heartbeat_answered(&mut controller, 10_010);
    // The Primary dies after its last answer: the stream breaks, then heartbeats fail.
    replication(
        &mut controller,
        12_000,
        Some(11_990),
        Some("the stream is down"),
    );
    let detected = fail_three_times(&mut controller, 20_020);
    assert!(promoted(&detected), "{detected:?}");
    assert_eq!(held(&detected), None);
    assert_eq!(controller.status().state, State::Active);
}

#[test]
fn a_continuous_standby_already_behind_when_the_primary_last_answered_holds_the_promotion() {
    let mut controller = following(ReplicationMode::Continuous, |_| {});
    // Catching up a backlog: it holds the Primary's writes up to 1 s, while the Primary still
    // answers at 10.02 s: up to 9 s of writes are not here.
    replication(&mut controller, 10_015, Some(1_000), Some("catching up"));
    heartbeat_answered(&mut controller, 10_010);
    let detected = fail_three_times(&mut controller, 20_020);
    assert!(!promoted(&detected), "{detected:?}");
    let message = held(&detected).expect("the hold is notified");
    assert!(
        message.contains("this node may lack writes the Primary acknowledged")
            && message.contains("only up to 9020 ms before (catching up)")
            && message.contains("lag bound 5s")
            && message.contains("tandem failover mode primary"),
        "{message}"
    );
    assert!(
        !detected
            .iter()
            .any(|command| matches!(command, Command::Persist(_) | Command::Serve { .. })),
        "nothing changes: {detected:?}"
    );
    assert_eq!(controller.status().state, State::Standby);
    assert!(controller.snapshot().promotion_held.is_some());
    // Ticks go on heartbeating; no second hold, no promotion.
    let later = controller.handle(at(40_000), Event::Tick);
    assert_eq!(
        acts(later),
        vec![Command::SendHeartbeat { to: PRIMARY.into() }]
    );
    let again = fail(&mut controller, at(40_005));
    assert!(!promoted(&again) && held(&again).is_none(), "{again:?}");
    // The operator decides: promoting by hand takes a fresh epoch and clears the hold.
    let by_hand = controller
        .operator(at(41_000), OperatorCommand::ModePrimary)
        .unwrap();
    assert!(promoted(&by_hand));
    assert_eq!(controller.snapshot().promotion_held, None);
}

#[test]
fn a_lag_within_the_bound_when_the_primary_last_answered_promotes() {
    let mut controller = following(ReplicationMode::Continuous, |_| {});
    replication(&mut controller, 10_015, Some(6_000), Some("catching up"));
    heartbeat_answered(&mut controller, 10_010);
    let detected = fail_three_times(&mut controller, 20_020);
    assert!(
        promoted(&detected),
        "4020 ms behind, within 5 s: {detected:?}"
    );
}

#[test]
fn a_standby_never_in_step_since_it_started_holds_and_a_returning_primary_clears_the_hold() {
    let mut controller = following(ReplicationMode::Continuous, |_| {});
    controller.handle(at(10_009), Event::Replication(ReplicationView::default()));
    heartbeat_answered(&mut controller, 10_010);
    let detected = fail_three_times(&mut controller, 20_020);
    let message = held(&detected).expect("held");
    assert!(
        message.contains("this node has not been in step with its source since it started"),
        "{message}"
    );
    heartbeat_answered(&mut controller, 40_000);
    assert_eq!(controller.snapshot().promotion_held, None);
}

#[test]
fn the_streams_own_answers_after_the_last_heartbeat_count_as_the_primarys_last_sign_of_life() {
    // The Primary answered a heartbeat while this node was still catching up, then the stream
    // brought it in step before the Primary died: nothing it acknowledged is missing.
    let mut controller = following(ReplicationMode::Continuous, |_| {});
    replication(&mut controller, 10_015, Some(1_000), Some("catching up"));
    heartbeat_answered(&mut controller, 10_010);
    replication(
        &mut controller,
        12_000,
        Some(10_500),
        Some("the stream is down"),
    );
    let detected = fail_three_times(&mut controller, 20_020);
    assert!(promoted(&detected), "{detected:?}");

    // A Primary that never answered a heartbeat in this run, with a stream that never got in
    // step: nothing is known, so the promotion is held.
    let mut config = secondary();
    config.replication = ReplicationMode::Continuous;
    let mut controller = Controller::new("id-self", Durable::new(config, 1));
    controller.handle(at(0), Event::Started);
    let detected = fail_three_times(&mut controller, 0);
    let message = held(&detected).expect("held");
    assert!(
        message.contains("this node has not been in step with its source since it started"),
        "{message}"
    );
}

#[test]
fn if_behind_promote_and_synchronous_block_promote_a_standby_that_is_behind() {
    for (replication, adjust) in [
        (
            ReplicationMode::Continuous,
            (|config: &mut HaConfig| config.on_behind = OnBehind::Promote) as fn(&mut HaConfig),
        ),
        // The Primary acknowledged nothing this node did not confirm holding.
        (ReplicationMode::Synchronous, |config: &mut HaConfig| {
            config.on_standby_lost = OnStandbyLost::Block
        }),
    ] {
        let mut controller = following(replication, adjust);
        let detected = fail_three_times(&mut controller, 10_010);
        assert!(promoted(&detected), "{replication}: {detected:?}");
    }
}

#[test]
fn a_held_promotion_goes_ahead_when_if_behind_at_failure_is_changed_to_promote() {
    let mut controller = following(ReplicationMode::Continuous, |_| {});
    let detected = fail_three_times(&mut controller, 10_010);
    assert!(held(&detected).is_some());
    let mut config = controller.durable().config.clone();
    config.on_behind = OnBehind::Promote;
    let (_, commands) = controller.configure(at(30_000), config).unwrap();
    assert!(promoted(&commands), "{commands:?}");
    assert_eq!(controller.status().state, State::Active);
}

#[test]
fn a_synchronous_standby_holds_once_the_primary_could_have_gone_on_without_it() {
    // Last in step less than the synchronous timeout before the detection: the Primary cannot
    // have acknowledged a write without this node yet.
    let timeout = |config: &mut HaConfig| config.synchronous_timeout = Span::from_secs(20);
    let mut controller = following(ReplicationMode::Synchronous, timeout);
    replication(
        &mut controller,
        10_015,
        Some(10_000),
        Some("the stream is down"),
    );
    let detected = fail_three_times(&mut controller, 10_010);
    assert!(promoted(&detected), "{detected:?}");

    // With a 5 s timeout the same failure is detected too late to be sure.
    let mut controller = following(ReplicationMode::Synchronous, |_| {});
    replication(
        &mut controller,
        10_015,
        Some(10_000),
        Some("the stream is down"),
    );
    let detected = fail_three_times(&mut controller, 10_010);
    let message = held(&detected).expect("held");
    assert!(
        message.contains("only up to 10025 ms ago (the stream is down)")
            && message.contains("synchronous timeout 5s"),
        "{message}"
    );
}

#[test]
fn the_primarys_policy_for_a_lost_standby_decides_not_the_standbys() {
    // This node is set to block, but its Primary falls back to continuous after 5 s: what the
    // Primary does is what this node may lack.
    let mut controller = following(ReplicationMode::Synchronous, |config| {
        config.on_standby_lost = OnStandbyLost::Block
    });
    let mut primary = peer("node-a", Mode::Primary, State::Active, 1, at(10_020));
    primary.replication = Some(ReplicationMode::Synchronous);
    primary.on_standby_lost = Some(OnStandbyLost::Continuous);
    primary.synchronous_timeout = Some(Span::from_secs(5));
    replication(
        &mut controller,
        10_015,
        Some(10_000),
        Some("the stream is down"),
    );
    heartbeat(&mut controller, at(10_010));
    controller.handle(at(10_020), Event::HeartbeatAnswered(primary));
    let detected = fail_three_times(&mut controller, 20_020);
    assert!(held(&detected).is_some(), "{detected:?}");
}

#[test]
fn a_primary_acknowledging_without_this_node_when_it_last_answered_holds_the_promotion() {
    // Back in step after an outage, but the Primary had fallen back to continuous and had not
    // yet seen this node confirm: writes it acknowledged meanwhile may be missing here.
    let timeout = |config: &mut HaConfig| config.synchronous_timeout = Span::from_secs(60);
    let mut controller = following(ReplicationMode::Synchronous, timeout);
    let mut primary = peer("node-a", Mode::Primary, State::Active, 1, at(10_020));
    primary.acknowledging_without_standby = Some(true);
    replication(&mut controller, 10_015, Some(10_015), None);
    heartbeat(&mut controller, at(10_010));
    controller.handle(at(10_020), Event::HeartbeatAnswered(primary));
    let detected = fail_three_times(&mut controller, 20_020);
    let message = held(&detected).expect("held");
    assert!(
        message.contains("acknowledging writes without this node"),
        "{message}"
    );
}

#[test]
fn a_synchronous_timeout_below_the_detection_time_is_warned_about() {
    // A witness: without a third party this combination is refused outright.
    let witnesses = || Some(vec!["http://127.0.0.1:9444/witness/primary".to_owned()]);
    let (_, warnings) = secondary()
        .with(&ConfigChange {
            replication: Some(ReplicationMode::Synchronous),
            witnesses: witnesses(),
            ..Default::default()
        })
        .unwrap();
    let warning = warnings
        .iter()
        .find(|warning| warning.field == "synchronousTimeout")
        .expect("warned");
    assert!(
        warning.message.contains("above 36s") && warning.message.contains("--if-behind promote"),
        "{}",
        warning.message
    );
    let (_, warnings) = secondary()
        .with(&ConfigChange {
            replication: Some(ReplicationMode::Synchronous),
            synchronous_timeout: Some(Span::from_secs(40)),
            witnesses: witnesses(),
            ..Default::default()
        })
        .unwrap();
    assert!(
        !warnings
            .iter()
            .any(|warning| warning.field == "synchronousTimeout")
    );
}

/// A Standby of a synchronous Primary with the continuous fallback, that detected its failure
/// long after it was last in step (so timing alone would hold the promotion), asking `witness`.
fn synchronous_standby_asking_witnesses() -> (Controller, u64) {
    let mut controller = following(ReplicationMode::Synchronous, |config| {
        config.witnesses = vec!["http://127.0.0.1:9444/witness/primary".parse().unwrap()];
    });
    let mut primary = peer("node-a", Mode::Primary, State::Active, 3, at(10_020));
    primary.replication = Some(ReplicationMode::Synchronous);
    primary.on_standby_lost = Some(OnStandbyLost::Continuous);
    primary.synchronous_timeout = Some(Span::from_secs(5));
    replication(
        &mut controller,
        10_015,
        Some(10_000),
        Some("the stream is down"),
    );
    heartbeat(&mut controller, at(10_010));
    controller.handle(at(10_020), Event::HeartbeatAnswered(primary));
    let asked = acts(fail_three_times(&mut controller, 20_020));
    assert!(
        asked.contains(&Command::AskWitnesses {
            primary: PRIMARY.into(),
            record_over: Some(Ballot::new(3, "id-node-a")),
        }),
        "the promotion over the Primary's ballot is to be recorded: {asked:?}"
    );
    (controller, 20_020 + THREE_FAILURES_MS)
}

#[test]
fn a_promotion_the_witnesses_recorded_goes_ahead_whatever_the_timing() {
    // The record proves the Primary did not go on without this node: the witnesses refuse its
    // fallback from now on.
    let (mut controller, now) = synchronous_standby_asking_witnesses();
    let commands = controller.handle(
        at(now),
        Event::WitnessesAnswered {
            reaching_primary: None,
            promotion: PromotionRecord::Granted,
        },
    );
    assert!(promoted(&commands), "{commands:?}");
    assert_eq!(controller.status().state, State::Active);
}

#[test]
fn a_promotion_the_witnesses_refused_to_record_is_held() {
    let (mut controller, now) = synchronous_standby_asking_witnesses();
    let commands = controller.handle(
        at(now),
        Event::WitnessesAnswered {
            reaching_primary: None,
            promotion: PromotionRecord::Refused(
                "node-a recorded that it acknowledges writes without its Standby".into(),
            ),
        },
    );
    let message = held(&commands).expect("held");
    assert!(
        message.contains("the witnesses did not record this promotion")
            && message.contains("node-a recorded"),
        "{message}"
    );
    assert_eq!(controller.status().state, State::Standby);
    // Witnesses that keep no records: judged by timing, which holds here too.
    let (mut controller, now) = synchronous_standby_asking_witnesses();
    let commands = controller.handle(
        at(now),
        Event::WitnessesAnswered {
            reaching_primary: None,
            promotion: PromotionRecord::Unsupported,
        },
    );
    assert!(held(&commands).is_some(), "{commands:?}");
}

fn falls_back(commands: &[Command]) -> bool {
    commands
        .iter()
        .any(|command| matches!(command, Command::FallBackAtPromotion))
}

#[test]
fn a_node_promoted_over_its_failed_primary_falls_back_at_once_unless_writes_must_block() {
    // Continuous fallback: the Standby it would wait for is the Primary that just failed.
    let timeout = |config: &mut HaConfig| config.synchronous_timeout = Span::from_secs(20);
    let mut controller = following(ReplicationMode::Synchronous, timeout);
    replication(&mut controller, 10_015, Some(10_000), None);
    let detected = fail_three_times(&mut controller, 10_010);
    assert!(promoted(&detected), "{detected:?}");
    assert!(falls_back(&detected), "{detected:?}");
    // After the Serve that opens writes, so the fallback applies to the new tenure's gate.
    let serve_at = detected
        .iter()
        .position(|command| matches!(command, Command::Serve { .. }));
    let fall_back_at = detected
        .iter()
        .position(|command| matches!(command, Command::FallBackAtPromotion));
    assert!(serve_at < fall_back_at, "{detected:?}");
    assert!(
        logs(&detected)
            .iter()
            .any(|line| line.contains("writes are acknowledged without a Standby now")),
        "{detected:?}"
    );

    // `block`: writes wait for a Standby, as the mode promises.
    let mut controller = following(ReplicationMode::Synchronous, |config| {
        config.on_standby_lost = OnStandbyLost::Block
    });
    let detected = fail_three_times(&mut controller, 10_010);
    assert!(
        promoted(&detected) && !falls_back(&detected),
        "{detected:?}"
    );

    // Continuous replication has no gate; a promotion by hand while the Primary answers (a
    // switchover, `failover mode primary`) keeps waiting for the old Primary as its Standby.
    let mut controller = following(ReplicationMode::Continuous, |config| {
        config.on_behind = OnBehind::Promote
    });
    assert!(!falls_back(&fail_three_times(&mut controller, 10_010)));
    let mut controller = following(ReplicationMode::Synchronous, |_| {});
    let commands = controller
        .operator_with(at(10_000), OperatorCommand::ModePrimary, Guard::Forced)
        .unwrap();
    assert!(
        promoted(&commands) && !falls_back(&commands),
        "{commands:?}"
    );
}

#[test]
fn a_fenced_node_and_a_refused_mode_secondary_give_the_full_command_to_follow_the_active_node() {
    let mut controller = Controller::new("id-self", Durable::new(primary(), 1));
    controller.handle(at(0), Event::Started);
    let error = controller
        .operator_with(at(10), OperatorCommand::ModeSecondary, Guard::Forced)
        .unwrap_err();
    assert!(
        error.contains("--primary is not set")
            && error.contains("`tandem ha configure --mode secondary --primary <the Active"),
        "{error}"
    );
}

/// A Primary synced by hand from the node promoted in its place, then restarted as a Primary
/// (the demo's failback found it): its epoch is that node's, so it must not resume Active in it,
/// whichever node id is larger.
#[test]
fn a_primary_whose_epoch_came_from_a_sync_is_fenced_by_that_epochs_holder() {
    let mut durable = Durable::new(primary(), 1);
    durable.epoch = 2; // brought by `failover sync` from node-a, Active in epoch 2
    let mut controller = Controller::new("id-z", durable);
    controller.handle(at(0), Event::Started);
    let mut holder = peer("node-a", Mode::Secondary, State::Active, 2, at(1));
    holder.node_id = "id-a".into(); // below id-z: a tie by node id would go to this node
    let commands = controller.handle(at(1), Event::PeerSeen(holder));
    controller.handle(at(2), Event::PeersChecked);
    assert_eq!(controller.status().state, State::NotAvailable);
    assert_eq!(controller.epoch(), 2);
    assert!(
        logs(&commands)
            .iter()
            .any(|line| line.contains("the ballot is node-a's")),
        "{commands:?}"
    );
}

/// The same node with no Active peer takes a fresh ballot instead of its source's.
#[test]
fn a_primary_whose_epoch_came_from_a_sync_takes_a_new_epoch_when_no_peer_is_active() {
    let mut durable = Durable::new(primary(), 1);
    durable.epoch = 2;
    let mut controller = Controller::new("id-z", durable);
    controller.handle(at(0), Event::Started);
    let standby = peer("node-a", Mode::Secondary, State::Standby, 2, at(1));
    controller.handle(at(1), Event::PeerSeen(standby));
    let commands = controller.handle(at(2), Event::PeersChecked);
    assert_eq!(controller.status().state, State::Active);
    assert_eq!(controller.epoch(), 3);
    assert_eq!(controller.durable().held_epoch, Some(3));
    assert!(
        logs(&commands)
            .iter()
            .any(|line| line.contains("came from another node's history")),
        "{commands:?}"
    );
}

/// A planned switchover: the new Active node last saw its old Primary Active before it took
/// its ballot, which is no sign of two Active nodes (the old one stepped down meanwhile). Only
/// a sighting after the promotion that still says Active raises the alarm.
#[test]
fn a_peer_last_seen_active_before_this_nodes_promotion_raises_no_dual_active_alarm() {
    let notified_dual_active = |commands: &[Command]| {
        commands.iter().any(|command| {
            matches!(
                command,
                Command::Notify {
                    notification: Notification::DualActive,
                    ..
                }
            )
        })
    };
    let mut controller = started_standby();
    heartbeat(&mut controller, at(0));
    let primary_active = peer("node-a", Mode::Primary, State::Active, 1, at(1));
    controller.handle(at(1), Event::HeartbeatAnswered(primary_active));
    let promoted = controller
        .operator_with(at(2), OperatorCommand::ModePrimary, Guard::Forced)
        .unwrap();
    assert_eq!(controller.status().state, State::Active);
    assert!(!notified_dual_active(&promoted), "{promoted:?}");
    let still_active = peer("node-a", Mode::Primary, State::Active, 1, at(3));
    let seen = controller.handle(at(3), Event::PeerSeen(still_active));
    assert!(notified_dual_active(&seen), "{seen:?}");
}
