//! The rule, one behaviour per test, checked by the commands the policy emits.

use super::*;
use tandem_ha::State;

const LIMITS: Limits = Limits { fall: 3, rise: 2 };
const PRIMARY: usize = 0;
const SECONDARY: usize = 1;

fn ok(text: &str) -> ProbeResult {
    ProbeResult::Ok(format!("MOBILEIRON-STATUS: OK{text}"))
}

fn failed(text: &str) -> ProbeResult {
    ProbeResult::Failed(text.into())
}

/// A scripted world: each backend's two pages answer as set, with the ballot set (none by
/// default: a backend without the header), one probe round at a time.
struct World {
    policy: Policy,
    now_ms: i64,
    answers: Vec<[ProbeResult; 2]>,
    ballots: Vec<BallotSeen>,
}

const NO_HEADER: &str = "no tandem-ballot header (an older or non-Tandem server)";

fn ballot(epoch: i64, node_id: &str, state: State, ha_enabled: bool) -> ProbeBallot {
    ProbeBallot {
        own: Ballot::new(epoch, node_id),
        state,
        ha_enabled,
        newest: (state == State::Active && ha_enabled).then(|| Ballot::new(epoch, node_id)),
    }
}

impl World {
    fn new(backends: &[(&str, &str)]) -> Self {
        Self {
            policy: Policy::new(
                backends
                    .iter()
                    .map(|(name, group)| ((*name).into(), (*group).into()))
                    .collect(),
                LIMITS,
            ),
            now_ms: 0,
            answers: vec![
                [failed("connection refused"), failed("connection refused")];
                backends.len()
            ],
            ballots: vec![BallotSeen::Unusable(NO_HEADER.into()); backends.len()],
        }
    }

    /// The pair, each node stating its ballot: the Primary Active in epoch 1, the Secondary
    /// Standby.
    fn pair_with_ballots() -> Self {
        let mut world = Self::pair();
        world.state(PRIMARY, ballot(1, "node-a", State::Active, true));
        world.state(SECONDARY, ballot(1, "node-b", State::Standby, true));
        world
    }

    fn state(&mut self, backend: usize, ballot: ProbeBallot) {
        self.ballots[backend] = BallotSeen::Stated(ballot);
    }

    fn pair() -> Self {
        let mut world = Self::new(&[("main-primary", "main"), ("main-secondary", "main")]);
        world.set(PRIMARY, Node::Active);
        world.set(SECONDARY, Node::Standby);
        world
    }

    fn set(&mut self, backend: usize, node: Node) {
        self.answers[backend] = match node {
            Node::Active => [ok(""), ok(" (Mode: Primary)")],
            Node::Standby => [
                failed("503 MOBILEIRON-STATUS: NOT OK (Standby)"),
                ok(" (Mode: Standby)"),
            ],
            Node::NotAvailable => [
                failed("503 MOBILEIRON-STATUS: NOT OK (Not Available)"),
                failed("503 MOBILEIRON-STATUS: NOT OK (Not Available)"),
            ],
            Node::Dead => [failed("connection refused"), failed("connection refused")],
            Node::SaysSomethingElse => [
                failed("200 but the body lacks MOBILEIRON-STATUS: OK: <html>It works!</html>"),
                failed("200 but the body lacks MOBILEIRON-STATUS: OK: <html>It works!</html>"),
            ],
        };
    }

    /// A pair whose Primary died and whose Secondary promoted itself: traffic on the Secondary.
    fn failed_over() -> Self {
        let mut world = Self::pair();
        world.round();
        world.set(PRIMARY, Node::Dead);
        world.set(SECONDARY, Node::Active);
        world.rounds(3);
        assert_eq!(world.active_name(), Some("main-secondary"));
        world
    }

    /// One probe round (every page of every backend), one second later; all commands emitted.
    fn round(&mut self) -> Vec<Command> {
        self.now_ms += 1_000;
        let mut commands = Vec::new();
        for backend in 0..self.answers.len() {
            for page in Page::ALL {
                let index = match page {
                    Page::Status => 0,
                    Page::HaStatus => 1,
                };
                let answer = self.answers[backend][index].clone();
                let refused =
                    matches!(&answer, ProbeResult::Failed(why) if why == "connection refused");
                let ballot = if refused {
                    BallotSeen::NoAnswer
                } else {
                    self.ballots[backend].clone()
                };
                commands.extend(
                    self.policy
                        .probe(self.now_ms, backend, page, answer, ballot),
                );
            }
        }
        commands
    }

    fn rounds(&mut self, count: usize) -> Vec<Command> {
        (0..count).flat_map(|_| self.round()).collect()
    }

    fn active_name(&self) -> Option<&str> {
        self.policy
            .active()
            .map(|index| self.policy.backends()[index].name.as_str())
    }
}

#[derive(Clone, Copy)]
enum Node {
    Active,
    Standby,
    NotAvailable,
    Dead,
    SaysSomethingElse,
}

/// Only the routing commands, for comparing.
fn routing(commands: &[Command]) -> Vec<Command> {
    commands
        .iter()
        .filter(|command| {
            matches!(
                command,
                Command::Route(_) | Command::StopRouting | Command::CloseConnections(_)
            )
        })
        .cloned()
        .collect()
}

fn switches(commands: &[Command]) -> Vec<&Switch> {
    commands
        .iter()
        .filter_map(|command| match command {
            Command::Switched(switch) => Some(switch),
            _ => None,
        })
        .collect()
}

#[test]
fn traffic_starts_on_the_first_backend_that_serves_once_every_backend_answered() {
    let mut world = World::pair();
    // The Secondary answers first: nothing is routed until the Primary has answered too.
    let early = world
        .policy
        .probe(1, SECONDARY, Page::Status, ok(""), BallotSeen::NoAnswer);
    assert_eq!(routing(&early), vec![]);
    let commands = world.round();
    assert_eq!(routing(&commands), vec![Command::Route(PRIMARY)]);
    assert_eq!(
        world.policy.switches(),
        0,
        "the first routing is not a switch"
    );
    assert!(world.policy.reaches_active());
}

#[test]
fn traffic_stays_on_the_active_backend_while_its_status_probe_passes() {
    let mut world = World::pair();
    world.round();
    // Even when the Secondary serves too (e.g. both Active during a partition).
    world.set(SECONDARY, Node::Active);
    assert_eq!(routing(&world.rounds(10)), vec![]);
    assert_eq!(world.active_name(), Some("main-primary"));
}

#[test]
fn a_dead_primary_with_an_active_secondary_fails_over_after_fall_probes() {
    let mut world = World::pair();
    world.round();
    world.set(PRIMARY, Node::Dead);
    world.set(SECONDARY, Node::Active);
    assert_eq!(
        routing(&world.rounds(2)),
        vec![],
        "2 failures are fewer than fall = 3"
    );
    let commands = world.round();
    assert_eq!(
        routing(&commands),
        vec![
            Command::Route(SECONDARY),
            Command::CloseConnections(PRIMARY)
        ]
    );
    let switch = switches(&commands)[0];
    assert_eq!(switch.from.as_deref(), Some("main-primary"));
    assert_eq!(switch.to, "main-secondary");
    assert!(
        switch.reason.contains("failed 3 status probes"),
        "{}",
        switch.reason
    );
    assert!(
        switch.reason.contains("connection refused"),
        "{}",
        switch.reason
    );
    assert_eq!(world.policy.switches(), 1);
}

#[test]
fn the_switch_waits_for_the_standby_to_promote_itself() {
    let mut world = World::pair();
    world.round();
    world.set(PRIMARY, Node::Dead);
    // Down, new connections refused and open ones closed, but the Secondary is still a
    // Standby: traffic does not move.
    let commands = world.rounds(3);
    assert_eq!(
        routing(&commands),
        vec![Command::StopRouting, Command::CloseConnections(PRIMARY)]
    );
    assert_eq!(world.active_name(), Some("main-primary"));
    let waiting = world.policy.waiting.clone().unwrap_or_default();
    assert!(waiting.contains("main-secondary"), "{waiting}");
    assert!(waiting.contains("NOT OK (Standby)"), "{waiting}");
    // The waiting situation is logged once, not every round.
    let logged = world
        .rounds(5)
        .iter()
        .filter(|command| matches!(command, Command::Log { message, .. } if message.contains("no other backend")))
        .count();
    assert_eq!(logged, 0);
    // Promotion: the next round moves traffic (one passing status probe is enough).
    world.set(SECONDARY, Node::Active);
    assert_eq!(routing(&world.round()), vec![Command::Route(SECONDARY)]);
}

#[test]
fn a_flapping_primary_never_moves_traffic_while_the_secondary_stays_standby() {
    let mut world = World::pair();
    world.round();
    let mut all = Vec::new();
    for _ in 0..20 {
        world.set(PRIMARY, Node::Dead);
        all.extend(world.rounds(4));
        world.set(PRIMARY, Node::Active);
        all.extend(world.rounds(3));
    }
    assert!(switches(&all).is_empty());
    assert_eq!(world.active_name(), Some("main-primary"));
    // Each time it went down its connections were closed.
    let closed = routing(&all)
        .iter()
        .filter(|command| **command == Command::CloseConnections(PRIMARY))
        .count();
    assert_eq!(closed, 20);
}

#[test]
fn a_candidate_that_is_down_or_says_something_else_is_not_used() {
    for candidate in [Node::Dead, Node::NotAvailable, Node::SaysSomethingElse] {
        let mut world = World::pair();
        world.round();
        world.set(PRIMARY, Node::Dead);
        world.set(SECONDARY, candidate);
        let commands = world.rounds(6);
        assert_eq!(
            routing(&commands),
            vec![Command::StopRouting, Command::CloseConnections(PRIMARY)]
        );
        assert_eq!(world.active_name(), Some("main-primary"));
    }
}

#[test]
fn a_candidate_must_have_passed_hastatus_rise_times_after_failing_it() {
    let mut world = World::pair();
    world.set(SECONDARY, Node::Dead);
    world.round();
    world.set(PRIMARY, Node::Dead);
    world.set(SECONDARY, Node::Active);
    // Round 1 after the change: the Secondary's hastatus passed once (rise = 2): not yet.
    assert_eq!(routing(&world.round()), vec![]);
    // Round 2: hastatus up. Round 3: the Primary reaches fall = 3.
    assert_eq!(routing(&world.round()), vec![]);
    assert_eq!(
        routing(&world.round()),
        vec![
            Command::Route(SECONDARY),
            Command::CloseConnections(PRIMARY)
        ]
    );
}

#[test]
fn no_automatic_failback_when_the_primary_returns_healthy() {
    let mut world = World::failed_over();
    assert_eq!(world.active_name(), Some("main-secondary"));
    // The old Primary comes back and even reports Active: traffic stays.
    world.set(PRIMARY, Node::Active);
    assert_eq!(routing(&world.rounds(20)), vec![]);
    assert_eq!(world.active_name(), Some("main-secondary"));
}

#[test]
fn the_guides_failback_follows_the_nodes_role_swap() {
    let mut world = World::failed_over();
    // Failback: the old Primary is synced and made Primary; the other becomes Standby.
    world.set(PRIMARY, Node::Active);
    world.rounds(2);
    world.set(SECONDARY, Node::Standby);
    let commands = world.rounds(3);
    assert_eq!(
        routing(&commands),
        vec![
            Command::Route(PRIMARY),
            Command::CloseConnections(SECONDARY)
        ]
    );
}

#[test]
fn resume_moves_traffic_to_the_first_healthy_backend_or_the_named_one() {
    let mut world = World::failed_over();
    world.set(PRIMARY, Node::Active);
    world.rounds(2);
    let commands = world.policy.resume(world.now_ms, None).unwrap();
    assert_eq!(routing(&commands), vec![Command::Route(PRIMARY)]);
    assert_eq!(switches(&commands)[0].reason, "operator resume");
    // Resume to where traffic already is: nothing changes.
    let again = world
        .policy
        .resume(world.now_ms, Some("main-primary"))
        .unwrap();
    assert_eq!(routing(&again), vec![]);
    // Named: back to the Secondary, which still serves.
    let named = world
        .policy
        .resume(world.now_ms, Some("main-secondary"))
        .unwrap();
    assert_eq!(routing(&named), vec![Command::Route(SECONDARY)]);
    assert_eq!(world.policy.switches(), 3);
}

#[test]
fn resume_to_a_backend_that_is_down_is_refused_with_the_reason() {
    let mut world = World::failed_over();
    let refused = world
        .policy
        .resume(world.now_ms, Some("main-primary"))
        .unwrap_err();
    assert!(
        refused.0.contains("main-primary cannot take traffic"),
        "{refused}"
    );
    assert!(refused.0.contains("connection refused"), "{refused}");
    assert!(
        refused.0.contains("traffic stays on main-secondary"),
        "{refused}"
    );
    assert_eq!(world.active_name(), Some("main-secondary"));

    let unknown = world.policy.resume(world.now_ms, Some("nope")).unwrap_err();
    assert!(
        unknown.0.contains("main-primary, main-secondary"),
        "{unknown}"
    );

    world.set(SECONDARY, Node::Dead);
    world.rounds(3);
    let none = world.policy.resume(world.now_ms, None).unwrap_err();
    assert!(none.0.contains("no backend passes"), "{none}");
}

#[test]
fn groups_keep_traffic_in_the_data_center_until_none_of_it_can_take_it() {
    let mut world = World::new(&[
        ("main-primary", "main"),
        ("dr-secondary", "dr"),
        ("main-secondary", "main"),
    ]);
    // Configuration order puts DR second, but the group rule prefers main-secondary.
    let (main_secondary, dr) = (2, 1);
    world.set(PRIMARY, Node::Active);
    world.set(main_secondary, Node::Standby);
    world.set(dr, Node::Standby);
    world.round();
    world.set(PRIMARY, Node::Dead);
    world.set(main_secondary, Node::Active);
    world.set(dr, Node::Active);
    world.rounds(3);
    assert_eq!(world.active_name(), Some("main-secondary"));
    // The whole main data center fails: DR takes it.
    world.set(main_secondary, Node::Dead);
    world.rounds(3);
    assert_eq!(world.active_name(), Some("dr-secondary"));
}

#[test]
fn nothing_is_routed_while_no_backend_serves_and_the_first_to_serve_gets_it() {
    let mut world = World::pair();
    world.set(PRIMARY, Node::Dead);
    world.set(SECONDARY, Node::Standby);
    let commands = world.round();
    assert_eq!(routing(&commands), vec![]);
    assert!(!world.policy.reaches_active());
    world.set(SECONDARY, Node::Active);
    // Its status page was down: it must pass rise = 2 probes in a row first.
    assert_eq!(routing(&world.round()), vec![]);
    assert_eq!(routing(&world.round()), vec![Command::Route(SECONDARY)]);
}

#[test]
fn the_witness_says_cannot_reach_only_once_the_active_backend_is_down_and_no_longer_routed() {
    let mut world = World::pair();
    world.round();
    assert!(world.policy.reaches_active());
    world.set(PRIMARY, Node::Dead);
    // Fewer failures than fall = 3: devices still reach it through the controller, so the
    // witness must not let the Secondary promote yet.
    for _ in 0..2 {
        assert_eq!(routing(&world.round()), vec![]);
        assert!(world.policy.reaches_active());
    }
    // Down: new connections are refused in the same step, and only now the witness says so.
    let commands = world.round();
    assert_eq!(
        routing(&commands),
        vec![Command::StopRouting, Command::CloseConnections(PRIMARY)]
    );
    assert!(!world.policy.reaches_active());
    // It recovers (rise = 2): routed again, reachable again.
    world.set(PRIMARY, Node::Active);
    assert_eq!(routing(&world.round()), vec![]);
    assert!(!world.policy.reaches_active());
    assert_eq!(routing(&world.round()), vec![Command::Route(PRIMARY)]);
    assert!(world.policy.reaches_active());
}

// Ballots (rules 4 to 7).

fn logs(commands: &[Command], level: Level) -> Vec<&str> {
    commands
        .iter()
        .filter_map(|command| match command {
            Command::Log { level: at, message } if *at == level => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

fn remembered(commands: &[Command]) -> Vec<&Memory> {
    commands
        .iter()
        .filter_map(|command| match command {
            Command::Remember(memory) => Some(memory),
            _ => None,
        })
        .collect()
}

/// The Primary killed, the Secondary promoted in epoch 2: traffic on the Secondary.
fn failed_over_with_ballots() -> World {
    let mut world = World::pair_with_ballots();
    world.round();
    world.set(PRIMARY, Node::Dead);
    world.set(SECONDARY, Node::Active);
    world.state(SECONDARY, ballot(2, "node-b", State::Active, true));
    world.rounds(3);
    assert_eq!(world.active_name(), Some("main-secondary"));
    world
}

#[test]
fn a_restart_that_remembers_a_higher_ballot_refuses_the_old_primary() {
    let before = failed_over_with_ballots();
    let memory = before.policy.memory();
    assert_eq!(memory.highest_claim, Some(Ballot::new(2, "node-b")));
    assert_eq!(memory.active.as_deref(), Some("main-secondary"));

    // The controller restarts while the Secondary is unreachable and the old Primary, behind a
    // partition, still believes it is Active in epoch 1.
    let mut world = World::pair_with_ballots();
    world.policy.restore(memory);
    world.set(SECONDARY, Node::Dead);
    let commands = world.rounds(10);
    assert_eq!(routing(&commands), vec![]);
    assert!(!world.policy.passing());
    let waiting = world.policy.waiting.clone().unwrap_or_default();
    assert!(
        waiting.contains("claim epoch 1 of node node-a is stale"),
        "{waiting}"
    );
    assert!(
        world
            .policy
            .resume(world.now_ms, Some("main-primary"))
            .is_err()
    );
    assert!(world.policy.resume(world.now_ms, None).is_err());

    // The Secondary is back as the Active node of epoch 2: traffic goes there once its status
    // page is up (rise = 2 after its first failure).
    world.set(SECONDARY, Node::Active);
    world.state(SECONDARY, ballot(2, "node-b", State::Active, true));
    assert_eq!(routing(&world.round()), vec![]);
    assert_eq!(routing(&world.round()), vec![Command::Route(SECONDARY)]);
    assert_eq!(
        world.policy.switches(),
        0,
        "where traffic was before the restart"
    );
}

#[test]
fn a_resume_to_a_backend_with_a_stale_claim_is_refused_with_the_way_out() {
    let mut world = failed_over_with_ballots();
    world.set(PRIMARY, Node::Active);
    world.rounds(2);
    let refused = world
        .policy
        .resume(world.now_ms, Some("main-primary"))
        .unwrap_err();
    assert!(
        refused.0.contains(
            "claims epoch 1 of node node-a, below the newest claim seen (epoch 2 of node node-b)"
        ),
        "{refused}"
    );
    assert!(refused.0.contains("remove its state file"), "{refused}");
    assert_eq!(world.active_name(), Some("main-secondary"));
}

#[test]
fn after_a_restart_the_first_routing_follows_the_higher_claim_not_the_order() {
    let mut world = World::pair_with_ballots();
    world.set(SECONDARY, Node::Active);
    world.state(SECONDARY, ballot(2, "node-b", State::Active, true));
    let commands = world.round();
    assert_eq!(routing(&commands), vec![Command::Route(SECONDARY)]);
    let reason = &switches(&commands)[0].reason;
    assert!(
        reason.contains("holds the newest claim (epoch 2 of node node-b)"),
        "{reason}"
    );
}

#[test]
fn when_two_backends_pass_traffic_follows_the_higher_claim() {
    let mut world = World::pair_with_ballots();
    world.round();
    assert_eq!(world.active_name(), Some("main-primary"));
    // The Secondary promoted itself (epoch 2) while the Primary still answers as Active.
    world.set(SECONDARY, Node::Active);
    world.state(SECONDARY, ballot(2, "node-b", State::Active, true));
    let commands = world.round();
    assert_eq!(
        routing(&commands),
        vec![
            Command::Route(SECONDARY),
            Command::CloseConnections(PRIMARY)
        ]
    );
    let reason = &switches(&commands)[0].reason;
    assert!(
        reason.contains(
            "main-primary's claim, epoch 1 of node node-a, is below the newest claim seen \
             (epoch 2 of node node-b) (its latest status probe: MOBILEIRON-STATUS: OK)"
        ),
        "{reason}"
    );
    // It stays there: the old Primary's claim is stale for good.
    assert_eq!(routing(&world.rounds(10)), vec![]);
    assert_eq!(world.active_name(), Some("main-secondary"));
}

#[test]
fn a_newer_claim_learnt_from_a_standby_stops_routing_to_the_stale_active_backend() {
    let mut world = World::pair_with_ballots();
    world.round();
    // The Standby knows of a DR node that promoted itself in epoch 3: the Primary is stale,
    // and no configured backend holds the newest claim.
    let mut standby = ballot(1, "node-b", State::Standby, true);
    standby.newest = Some(Ballot::new(3, "node-dr"));
    world.state(SECONDARY, standby);
    let commands = world.round();
    assert_eq!(
        routing(&commands),
        vec![Command::StopRouting, Command::CloseConnections(PRIMARY)]
    );
    assert_eq!(world.active_name(), Some("main-primary"));
    // Its status page still passes: the witness still reaches it.
    assert!(world.policy.reaches_active());
}

#[test]
fn a_backend_with_ha_disabled_is_never_a_failover_candidate() {
    let mut world = World::pair_with_ballots();
    world.round();
    world.set(PRIMARY, Node::Dead);
    world.set(SECONDARY, Node::Active);
    world.state(SECONDARY, ballot(1, "node-b", State::Active, false));
    let commands = world.rounds(6);
    assert_eq!(
        routing(&commands),
        vec![Command::StopRouting, Command::CloseConnections(PRIMARY)]
    );
    let waiting = world.policy.waiting.clone().unwrap_or_default();
    assert!(
        waiting.contains("HA disabled (never a failover candidate)"),
        "{waiting}"
    );
}

#[test]
fn traffic_stays_on_an_active_backend_that_left_the_ha_group_with_one_warning() {
    let mut world = World::pair_with_ballots();
    world.state(PRIMARY, ballot(1, "node-a", State::Active, false));
    let mut commands = world.rounds(5);
    // Even a backend of the group that claims a newer ballot does not take it from there.
    world.set(SECONDARY, Node::Active);
    world.state(SECONDARY, ballot(2, "node-b", State::Active, true));
    commands.extend(world.rounds(5));
    assert_eq!(routing(&commands), vec![Command::Route(PRIMARY)]);
    let warnings: Vec<&str> = logs(&commands, Level::Warn)
        .into_iter()
        .filter(|message| message.contains("HA disabled"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn the_maintenance_hold_blocks_every_automatic_switch_until_released() {
    let mut world = World::pair_with_ballots();
    world.round();
    let commands = world
        .policy
        .hold(world.now_ms, Some("upgrade to 2.4"))
        .unwrap();
    assert_eq!(
        remembered(&commands)[0]
            .hold
            .as_ref()
            .map(|hold| hold.reason.as_str()),
        Some("upgrade to 2.4")
    );
    // The Primary goes down for its upgrade and the Secondary even promotes: traffic stays.
    world.set(PRIMARY, Node::Dead);
    world.set(SECONDARY, Node::Active);
    world.state(SECONDARY, ballot(2, "node-b", State::Active, true));
    let commands = world.rounds(6);
    assert_eq!(
        routing(&commands),
        vec![Command::StopRouting, Command::CloseConnections(PRIMARY)]
    );
    assert!(switches(&commands).is_empty());
    assert_eq!(world.active_name(), Some("main-primary"));
    let waiting = world.policy.waiting.clone().unwrap_or_default();
    assert!(
        waiting.contains("maintenance hold (upgrade to 2.4)"),
        "{waiting}"
    );

    // Release: the rule applies at once.
    let commands = world.policy.release(world.now_ms);
    assert_eq!(routing(&commands), vec![Command::Route(SECONDARY)]);
    assert_eq!(remembered(&commands)[0].hold, None);
    assert_eq!(
        remembered(&commands)[0].active.as_deref(),
        Some("main-secondary")
    );
}

#[test]
fn a_resume_under_the_hold_moves_traffic_and_the_hold_remains() {
    let mut world = failed_over_with_ballots();
    world.policy.hold(world.now_ms, None).unwrap();
    // The guide's failback: the old Primary is made Primary in epoch 3.
    world.set(PRIMARY, Node::Active);
    world.state(PRIMARY, ballot(3, "node-a", State::Active, true));
    let commands = world.rounds(3);
    assert_eq!(
        routing(&commands),
        vec![Command::StopRouting, Command::CloseConnections(SECONDARY)],
        "the Secondary's claim is stale: no new connection, but no switch under the hold"
    );
    let commands = world.policy.resume(world.now_ms, None).unwrap();
    assert_eq!(routing(&commands), vec![Command::Route(PRIMARY)]);
    assert!(logs(&commands, Level::Warn)[0].contains("hold (maintenance) remains"));
    assert_eq!(
        world.policy.held().map(|hold| hold.reason.as_str()),
        Some("maintenance")
    );
}

#[test]
fn a_hold_survives_a_restart_and_the_first_routing_keeps_the_remembered_backend() {
    let mut before = World::pair_with_ballots();
    before.round();
    before.policy.hold(before.now_ms, Some("upgrade")).unwrap();
    let memory = before.policy.memory();

    let mut world = World::pair_with_ballots();
    world.policy.restore(memory.clone());
    assert_eq!(world.policy.held(), memory.hold.as_ref());
    // The Primary is down for its upgrade, the Secondary Active: nothing is routed anywhere.
    world.set(PRIMARY, Node::Dead);
    world.set(SECONDARY, Node::Active);
    world.state(SECONDARY, ballot(2, "node-b", State::Active, true));
    assert_eq!(routing(&world.rounds(5)), vec![]);
    assert_eq!(world.active_name(), Some("main-primary"));
    assert!(!world.policy.reaches_active());
}

#[test]
fn a_bad_hold_reason_names_the_value_and_the_fix() {
    let mut world = World::pair();
    let error = world.policy.hold(0, Some("two\nlines")).unwrap_err();
    assert!(error.0.contains("reason = \"two\\nlines\""), "{error}");
    assert!(error.0.contains("--reason"), "{error}");
    let long = "x".repeat(HOLD_REASON_CHARS_MAX + 1);
    assert!(world.policy.hold(0, Some(&long)).is_err());
    assert_eq!(world.policy.held(), None);
}

#[test]
fn two_active_backends_raise_one_alarm_per_episode_until_it_clears() {
    let mut world = World::pair_with_ballots();
    world.round();
    world.set(SECONDARY, Node::Active);
    world.state(SECONDARY, ballot(2, "node-b", State::Active, true));
    let commands = world.rounds(5);
    let errors = logs(&commands, Level::Error);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("main-primary [epoch=1; node-id=node-a; state=active"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("main-secondary [epoch=2; node-id=node-b"),
        "{}",
        errors[0]
    );
    let episode = world.policy.dual_active().cloned().unwrap();
    assert_eq!(episode.backends, vec!["main-primary", "main-secondary"]);

    // The old Primary fences itself: the alarm clears, once.
    world.set(PRIMARY, Node::NotAvailable);
    world.state(PRIMARY, ballot(1, "node-a", State::NotAvailable, true));
    let commands = world.rounds(3);
    let cleared = logs(&commands, Level::Info)
        .into_iter()
        .filter(|message| message.contains("dual Active resolved"))
        .count();
    assert_eq!(cleared, 1);
    assert_eq!(world.policy.dual_active(), None);
}

#[test]
fn a_standalone_node_and_an_active_node_are_no_dual_active() {
    let mut world = World::pair_with_ballots();
    world.set(SECONDARY, Node::Active);
    world.state(SECONDARY, ballot(1, "node-b", State::Active, false));
    let commands = world.rounds(3);
    assert!(logs(&commands, Level::Error).is_empty());
    assert_eq!(world.policy.dual_active(), None);
}

#[test]
fn the_memory_is_emitted_first_and_only_when_it_changes() {
    let mut world = World::pair_with_ballots();
    let commands = world.round();
    assert!(matches!(commands[0], Command::Remember(_)), "{commands:?}");
    // The memory naming the active backend comes before the route to it.
    let position = |wanted: fn(&Command) -> bool| commands.iter().rposition(wanted).unwrap();
    assert!(
        position(|command| matches!(command, Command::Remember(_)))
            < position(|command| matches!(command, Command::Route(_))),
        "{commands:?}"
    );
    let memory = *remembered(&commands).last().unwrap();
    assert_eq!(memory.active.as_deref(), Some("main-primary"));
    assert_eq!(memory.highest_claim, Some(Ballot::new(1, "node-a")));
    assert_eq!(
        memory.backend_claims.get("main-primary"),
        Some(&Ballot::new(1, "node-a"))
    );
    assert!(remembered(&world.rounds(5)).is_empty());
}

#[test]
fn an_unparsable_ballot_header_is_recorded_once_and_the_backend_keeps_the_old_rule() {
    let mut world = World::pair();
    world.ballots[SECONDARY] =
        BallotSeen::Unusable("tandem-ballot \"x\": `x` is not key=value".into());
    world.round();
    world.set(PRIMARY, Node::Dead);
    world.set(SECONDARY, Node::Active);
    let commands = world.rounds(3);
    assert_eq!(world.active_name(), Some("main-secondary"));
    assert!(
        logs(&commands, Level::Info)
            .iter()
            .all(|message| !message.contains("states no usable ballot"))
    );
    assert!(
        world.policy.backends()[SECONDARY]
            .ballot_detail
            .contains("is not key=value")
    );
}

#[test]
fn after_a_switchover_traffic_follows_the_new_claim_on_the_next_round_not_after_fall() {
    let mut world = World::pair_with_ballots();
    world.round();
    assert_eq!(world.active_name(), Some("main-primary"));
    // `ha switchover`: the old Primary steps down to Standby, knowing the newer claim; the
    // Secondary is Active in epoch 2.
    world.set(PRIMARY, Node::Standby);
    let mut old = ballot(1, "node-a", State::Standby, true);
    old.newest = Some(Ballot::new(2, "node-b"));
    world.state(PRIMARY, old);
    world.set(SECONDARY, Node::Active);
    world.state(SECONDARY, ballot(2, "node-b", State::Active, true));
    // One round: the old Primary failed one status probe (fall is 3), yet its probe stops
    // routing to it and closes its connections, and the new Active's takes the traffic.
    let commands = world.round();
    assert_eq!(
        routing(&commands),
        vec![
            Command::StopRouting,
            Command::CloseConnections(PRIMARY),
            Command::Route(SECONDARY)
        ]
    );
    let moved = switches(&commands);
    assert_eq!(moved.len(), 1);
    assert!(
        moved[0].reason.contains("main-primary stepped down"),
        "{}",
        moved[0].reason
    );
    assert_eq!(
        world.policy.backends()[PRIMARY].status.state,
        HealthState::Up
    );
}

#[test]
fn a_primary_restarting_in_its_own_tenure_keeps_traffic_while_it_checks_its_peers() {
    let mut world = World::pair_with_ballots();
    world.round();
    // Restarted, it answers Not Available with its own ballot, still the newest, until its
    // startup peer check is done: nothing moves before `fall` failed probes.
    world.set(PRIMARY, Node::NotAvailable);
    world.state(PRIMARY, ballot(1, "node-a", State::NotAvailable, true));
    assert_eq!(routing(&world.rounds(2)), vec![]);
    world.set(PRIMARY, Node::Active);
    world.state(PRIMARY, ballot(1, "node-a", State::Active, true));
    assert_eq!(routing(&world.rounds(3)), vec![]);
    assert_eq!(world.active_name(), Some("main-primary"));
}
