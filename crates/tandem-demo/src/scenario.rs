//! The scenarios: what the operator (or a failure) does, each step printed as the command it
//! corresponds to, and what the demo then watches happen.

use crate::cluster::{
    Cluster, DR, FAIL_OVER_CONTROLS, PRIMARY, SECONDARY, STATE_DEADLINE, SYNCHRONOUS_TIMEOUT,
    wait_until,
};
use crate::error::{DemoError, DemoResult};
use crate::view::{Live, Screen};
use std::time::{Duration, Instant};

/// What the demo plays once the cluster is healthy and the devices check in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// `kill -9` of the Primary: detection, promotion, the traffic switch.
    Failover,
    /// A failover, then the old Primary back as the Standby, `ha switchover`, `lb resume`.
    Failback,
    /// Data center 1 lost (Primary and Secondary); the operator promotes the DR node.
    DcLoss,
    /// A planned role swap: `ha switchover` on the Standby.
    Switchover,
    /// The guide's upgrade procedure, with the controller held: no failover.
    Upgrade,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::Failback => "failback",
            Self::DcLoss => "dc-loss",
            Self::Switchover => "switchover",
            Self::Upgrade => "upgrade",
        }
    }
}

/// The HA options every node of the main pair gets: synchronous replication (the Primary
/// answers a write only once the Standby holds it, so a `kill -9` of the Primary loses no
/// acknowledged write), the traffic controller as witness (it tells a dead Primary from a cut
/// link, and records which of a fallen-back Primary and a promoted Standby came first), and
/// the demo's fast Fail Over Controls.
pub fn pair_options(witness: &str) -> Vec<String> {
    let mut options: Vec<String> = [
        "--replication",
        "synchronous",
        "--synchronous-timeout",
        SYNCHRONOUS_TIMEOUT,
        "--witness",
        witness,
    ]
    .iter()
    .map(|option| (*option).to_owned())
    .collect();
    options.extend(FAIL_OVER_CONTROLS.iter().map(|option| (*option).to_owned()));
    options
}

/// What a scenario's play needs.
pub struct Play<'a> {
    pub cluster: &'a Cluster,
    pub screen: &'a Screen,
    pub live: &'a Live,
    pub witness: String,
}

impl Play<'_> {
    /// Plays `scenario`; the node that ends Active.
    pub fn run(&self, scenario: Scenario) -> DemoResult<&'static str> {
        match scenario {
            Scenario::Failover => self.failover(),
            Scenario::Failback => {
                self.failover()?;
                self.failback()
            }
            Scenario::DcLoss => self.dc_loss(),
            Scenario::Switchover => self.switchover(),
            Scenario::Upgrade => self.upgrade(),
        }
    }

    /// Waits, on the live view, until `condition` holds; prints `event` with the time since
    /// `since`.
    fn watch(
        &self,
        since: Instant,
        event: impl Fn(&crate::view::Snapshot) -> String,
        condition: impl Fn(&crate::view::Snapshot) -> bool,
    ) -> DemoResult<()> {
        wait_until(
            STATE_DEADLINE,
            || format!("never seen: {}", event(&self.live.now())),
            || condition(&self.live.now()),
        )?;
        let now = self.live.now();
        self.screen.say(&format!(
            "  → {} (+{:.2} s)",
            event(&now),
            since.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    fn epoch(snapshot: &crate::view::Snapshot, node: &str) -> String {
        snapshot
            .node(node)
            .and_then(|node| node.epoch)
            .map_or_else(|| "?".into(), |epoch| epoch.to_string())
    }

    fn failover(&self) -> DemoResult<&'static str> {
        self.screen
            .say("scenario failover: the Primary dies (kill -9); the Secondary detects it and promotes itself, the traffic controller follows");
        let pid = self
            .cluster
            .tandem
            .kill_9(PRIMARY)
            .ok_or_else(|| DemoError::Failed(format!("{PRIMARY} was not running")))?;
        let killed = Instant::now();
        self.screen.say(&format!(
            "$ kill -9 {pid}                      # {PRIMARY}, the Active Primary"
        ));
        self.watch(
            killed,
            |_| format!("{PRIMARY} stopped answering"),
            |now| now.state_of(PRIMARY).is_none(),
        )?;
        self.watch(
            killed,
            |now| match now.node(SECONDARY).map_or(0, |node| node.heartbeat_failures) {
                0 => format!("{SECONDARY} detected the failure"),
                failures => format!(
                    "{SECONDARY}: {failures} heartbeat(s) to {PRIMARY} failed in a row (it promotes itself at 3)"
                ),
            },
            |now| {
                now.node(SECONDARY).is_some_and(|node| node.heartbeat_failures > 0)
                    || now.state_of(SECONDARY) == Some("Active")
            },
        )?;
        self.watch(
            killed,
            |now| {
                format!(
                    "{SECONDARY} asked the witness (the traffic controller: it cannot reach {PRIMARY}) and promoted itself: Active, epoch {}",
                    Self::epoch(now, SECONDARY)
                )
            },
            |now| now.state_of(SECONDARY) == Some("Active"),
        )?;
        self.watch(
            killed,
            |_| format!("traffic controller: {PRIMARY} down, devices now go to {SECONDARY}"),
            |now| now.route.as_deref() == Some(SECONDARY),
        )?;
        self.cluster.wait_for_state(SECONDARY, "Active")?;
        Ok(SECONDARY)
    }

    /// After [`Self::failover`]: the old Primary returns as the new Primary's Standby, then
    /// takes its role back by a switchover, and traffic is resumed to it.
    fn failback(&self) -> DemoResult<&'static str> {
        let cluster = self.cluster;
        self.screen.say("scenario failback: the old Primary returns, becomes the Standby, catches up, and takes the Primary role back");
        // Before it serves, the old Primary becomes the Active node's Secondary, and syncs
        // from it (the guide's failback begins with that sync): a write it committed but never
        // acknowledged (its Standby had not confirmed it when it died) is saved to its
        // divergence export, not kept. Serving only then, it can only come back as a Standby.
        let active_at = cluster.node(SECONDARY)?.ssh();
        let mut args = vec![
            "ha",
            "configure",
            "--enable",
            "--mode",
            "secondary",
            "--primary",
        ];
        args.push(&active_at);
        let options = pair_options(&self.witness);
        args.extend(options.iter().map(String::as_str));
        cluster.run(self.screen, PRIMARY, &args)?;
        cluster.run(self.screen, PRIMARY, &["failover", "sync", &active_at])?;
        let exported = match divergence_entries(&cluster.tandem.root.join(PRIMARY)) {
            0 => "it held no change of its own".to_owned(),
            changes => format!(
                "{changes} change(s) only it held (committed, never acknowledged) saved under {PRIMARY}/divergence/"
            ),
        };
        self.screen.say(&format!(
            "  → {PRIMARY} holds {SECONDARY}'s data; {exported}"
        ));
        cluster.serve(self.screen, PRIMARY)?;
        let started = Instant::now();
        self.watch(
            started,
            |now| {
                format!(
                    "{PRIMARY} is back: {} in epoch {}",
                    now.state_of(PRIMARY).unwrap_or("starting"),
                    Self::epoch(now, PRIMARY)
                )
            },
            |now| now.state_of(PRIMARY).is_some(),
        )?;
        cluster.wait_for_state(PRIMARY, "Standby")?;
        cluster.wait_in_step(PRIMARY)?;
        self.screen
            .say(&format!("  → {PRIMARY} is {SECONDARY}'s Standby, in step"));
        cluster.run(self.screen, PRIMARY, &["ha", "switchover"])?;
        let switched = Instant::now();
        self.watch(
            switched,
            |now| {
                format!(
                    "{PRIMARY} Active again, epoch {}",
                    Self::epoch(now, PRIMARY)
                )
            },
            |now| now.state_of(PRIMARY) == Some("Active"),
        )?;
        self.resume_to(PRIMARY)?;
        self.watch(
            switched,
            |_| format!("traffic controller: devices go to {PRIMARY} again"),
            |now| now.route.as_deref() == Some(PRIMARY),
        )?;
        Ok(PRIMARY)
    }

    /// `tandem lb resume --to NODE`, tried again while the controller has not yet seen the
    /// node pass its probes (`rise`); unless traffic is already there.
    fn resume_to(&self, node: &str) -> DemoResult<()> {
        let cluster = self.cluster;
        let mut printed = false;
        wait_until(
            STATE_DEADLINE,
            || format!("`tandem lb resume --to {node}` was refused throughout"),
            || {
                if cluster.route().as_deref() == Some(node) {
                    return true;
                }
                if !printed {
                    printed = true;
                    return cluster.lb(self.screen, &["resume", "--to", node]).is_ok();
                }
                cluster
                    .tandem
                    .ok(&["lb", "resume", "--to", node, "--admin", &cluster.lb_admin])
                    .is_ok()
            },
        )
    }

    fn switchover(&self) -> DemoResult<&'static str> {
        let cluster = self.cluster;
        self.screen.say("scenario switchover: a planned role swap; the Primary closes writes, the Standby syncs to its last write and takes over");
        cluster.run(self.screen, SECONDARY, &["ha", "switchover"])?;
        let started = Instant::now();
        self.watch(
            started,
            |now| {
                format!(
                    "{SECONDARY} Active, epoch {}; {PRIMARY} {}",
                    Self::epoch(now, SECONDARY),
                    now.state_of(PRIMARY).unwrap_or("?")
                )
            },
            |now| now.state_of(SECONDARY) == Some("Active"),
        )?;
        self.watch(
            started,
            |_| format!("traffic controller: devices go to {SECONDARY}"),
            |now| now.route.as_deref() == Some(SECONDARY),
        )?;
        Ok(SECONDARY)
    }

    fn dc_loss(&self) -> DemoResult<&'static str> {
        let cluster = self.cluster;
        self.screen.say("scenario dc-loss: data center 1 is lost (Primary and Secondary); the DR node, on Keep in Standby, is brought online by the operator");
        let mut pids = Vec::new();
        for node in [PRIMARY, SECONDARY] {
            let pid = cluster
                .tandem
                .kill_9(node)
                .ok_or_else(|| DemoError::Failed(format!("{node} was not running")))?;
            pids.push(pid.to_string());
        }
        let lost = Instant::now();
        self.screen.say(&format!(
            "$ kill -9 {}               # {PRIMARY} and {SECONDARY}: data center 1",
            pids.join(" ")
        ));
        self.watch(
            lost,
            |_| "data center 1 stopped answering; devices get no service".into(),
            |now| now.state_of(PRIMARY).is_none() && now.state_of(SECONDARY).is_none(),
        )?;
        // The guide brings a DR server online by hand. Refused (exit 3) while the DR node still
        // counts the lost Primary as Active moments ago: tried again until it has noticed.
        let mut printed = false;
        wait_until(
            STATE_DEADLINE,
            || format!("`tandem --data-dir {DR} failover mode primary` was refused throughout"),
            || {
                let args = ["failover", "mode", "primary"];
                if printed {
                    cluster.quiet(DR, &args).is_ok()
                } else {
                    printed = true;
                    cluster.run(self.screen, DR, &args).is_ok()
                }
            },
        )?;
        self.watch(
            lost,
            |now| format!("{DR} Active, epoch {}", Self::epoch(now, DR)),
            |now| now.state_of(DR) == Some("Active"),
        )?;
        self.watch(
            lost,
            |_| format!("traffic controller: no node left in group main, devices go to {DR}"),
            |now| now.route.as_deref() == Some(DR),
        )?;
        Ok(DR)
    }

    /// README's upgrade procedure: the Secondary leaves the group, the controller is held, both
    /// nodes are restarted (on the new binary, in real life), the Secondary rejoins and syncs,
    /// the controller is released. No failover; devices see the Primary's restart only.
    fn upgrade(&self) -> DemoResult<&'static str> {
        let cluster = self.cluster;
        self.screen.say("scenario upgrade: the guide's procedure, with the traffic controller held so nothing fails over");
        cluster.run(self.screen, SECONDARY, &["ha", "configure", "--disable"])?;
        let history = cluster.run(self.screen, SECONDARY, &["ha", "history", "--json"])?;
        let last = serde_json::from_str::<serde_json::Value>(&history)
            .ok()
            .and_then(|rows| rows.get(0).cloned())
            .unwrap_or_default();
        self.screen.say(&format!(
            "  → last sync: {} ({}) from {}, {}, up to change {}",
            last["kind"].as_str().unwrap_or("?"),
            last["trigger"].as_str().unwrap_or("?"),
            last["source"].as_str().unwrap_or("?"),
            last["result"].as_str().unwrap_or("?"),
            last["positionSeq"]
        ));
        cluster.lb(self.screen, &["hold", "--reason", "upgrade"])?;
        for node in [SECONDARY, PRIMARY] {
            self.screen.say(&format!(
                "  (install the new tandem binary for {node}, then restart it)"
            ));
            let pid = cluster.tandem.stop(node);
            self.screen.say(&format!(
                "$ kill {}                          # stop {node}",
                pid.map_or_else(|| "?".into(), |pid| pid.to_string())
            ));
            cluster.serve(self.screen, node)?;
        }
        cluster.wait_for_state(PRIMARY, "Active")?;
        cluster.run(self.screen, SECONDARY, &["ha", "configure", "--enable"])?;
        cluster.wait_for_state(SECONDARY, "Standby")?;
        cluster.wait_in_step(SECONDARY)?;
        self.screen.say(&format!(
            "  → {SECONDARY} is a Standby again, in step with {PRIMARY}"
        ));
        cluster.lb(self.screen, &["release"])?;
        Ok(PRIMARY)
    }
}

/// Changes saved to a node's divergence exports (`divergence/*.jsonl`: a header line, then one
/// change per line).
fn divergence_entries(data_dir: &std::path::Path) -> usize {
    let Ok(files) = std::fs::read_dir(data_dir.join("divergence")) else {
        return 0;
    };
    files
        .filter_map(Result::ok)
        .map(|file| {
            std::fs::read_to_string(file.path())
                .unwrap_or_default()
                .lines()
                .filter(|line| line.contains("\"seq\""))
                .count()
        })
        .sum()
}

/// Lets the devices check in for `duration`, the live view running.
pub fn settle(duration: Duration) {
    std::thread::sleep(duration);
}
