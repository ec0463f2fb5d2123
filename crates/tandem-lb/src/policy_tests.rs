//! The rule, one behaviour per test, checked by the commands the policy emits.

use super::*;

const LIMITS: Limits = Limits { fall: 3, rise: 2 };
const PRIMARY: usize = 0;
const SECONDARY: usize = 1;

fn ok(text: &str) -> ProbeResult {
    ProbeResult::Ok(format!("MOBILEIRON-STATUS: OK{text}"))
}

fn failed(text: &str) -> ProbeResult {
    ProbeResult::Failed(text.into())
}

/// A scripted world: each backend's two pages answer as set, one probe round at a time.
struct World {
    policy: Policy,
    now_ms: i64,
    answers: Vec<[ProbeResult; 2]>,
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
        }
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
                commands.extend(self.policy.probe(self.now_ms, backend, page, answer));
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
        .filter(|command| matches!(command, Command::Route(_) | Command::CloseConnections(_)))
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
    let early = world.policy.probe(1, SECONDARY, Page::Status, ok(""));
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
            Command::CloseConnections(PRIMARY),
            Command::Route(SECONDARY)
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
    // Down, connections closed, but the Secondary is still a Standby: traffic does not move.
    let commands = world.rounds(3);
    assert_eq!(routing(&commands), vec![Command::CloseConnections(PRIMARY)]);
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
        assert_eq!(routing(&commands), vec![Command::CloseConnections(PRIMARY)]);
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
            Command::CloseConnections(PRIMARY),
            Command::Route(SECONDARY)
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
            Command::CloseConnections(SECONDARY),
            Command::Route(PRIMARY)
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
fn the_witness_answers_from_the_latest_status_probe_of_the_active_backend() {
    let mut world = World::pair();
    world.round();
    assert!(world.policy.reaches_active());
    world.set(PRIMARY, Node::Dead);
    world.round();
    // One failure: not yet down, but the witness already says it cannot reach it.
    assert_eq!(world.active_name(), Some("main-primary"));
    assert!(!world.policy.reaches_active());
}
