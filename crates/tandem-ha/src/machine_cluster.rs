//! The controller's rules for "one Active node": periodic peer checks, fencing on any newer
//! ballot (direct or gossip), the dual-Active alarm, incomplete trust, freezes, and refusing
//! operator actions that would leave the fleet with two Active nodes or none.

use super::*;

/// Beyond one heartbeat interval, how long a node's Active state still counts as current for the
/// dual-Active alarm: the round trip of a check or heartbeat and the tick that handles it.
const LIVE_MARGIN_MS: u64 = 1_000;
/// The shortest window in which an Active node counts as live for refusing an operator's
/// promotion: a few seconds, even with sub-second heartbeats, because the answer then carries
/// the operator's whole fleet.
const REFUSAL_WINDOW_MIN_MS: u64 = 5_000;
/// The shortest gap in this process's own progress that counts as a freeze: shorter stalls
/// (scheduling, a slow disk) happen on a loaded machine and no peer can detect a failure and
/// promote within them.
pub const FREEZE_GAP_MIN_MS: u64 = 500;
/// The shortest time one heartbeat can take to fail against a frozen (not dead) peer: the
/// runtime's floor on the heartbeat timeout.
const HEARTBEAT_TIMEOUT_FLOOR_MS: u64 = 200;

impl Controller {
    /// The newest claim known anywhere, this node's own included, with its holder's name.
    pub(super) fn newest_known_claim(&self) -> Option<(Ballot, String)> {
        let own = (self.status.state == State::Active && self.status.ha_enabled).then(|| {
            (
                Ballot::new(self.durable.epoch, self.node_id.clone()),
                "this node".to_owned(),
            )
        });
        let learned = self
            .cluster
            .newest_claim()
            .map(|(ballot, name)| (ballot, name.to_owned()));
        own.into_iter().chain(learned).max_by(|a, b| a.0.cmp(&b.0))
    }

    /// The gap in this process's progress that counts as a freeze for this configuration: no
    /// longer than the fastest failure detection a peer with the same Fail Over Controls can
    /// make (each of its failed heartbeats waits at least the timeout floor, with a Re-check
    /// interval between them), and never under [`FREEZE_GAP_MIN_MS`]. `None` with HA disabled:
    /// no peer takes over from a standalone node.
    pub fn freeze_threshold_ms(&self) -> Option<u64> {
        let config = &self.durable.config;
        config.enabled.then(|| {
            let fastest_detection = u64::from(config.heartbeat_failures.saturating_sub(1))
                * config.recheck_interval.as_millis()
                + HEARTBEAT_TIMEOUT_FLOOR_MS;
            fastest_detection.max(FREEZE_GAP_MIN_MS)
        })
    }

    fn live_window_ms(&self) -> u64 {
        self.durable.config.heartbeat_interval.as_millis() + LIVE_MARGIN_MS
    }

    fn refusal_window_ms(&self) -> u64 {
        let config = &self.durable.config;
        config.detection_time_max().as_millis() + config.heartbeat_interval.as_millis()
    }

    /// Members Active in the HA group seen within `window_ms`, and since this node last failed
    /// to reach them.
    fn live_active_members(&self, now: Now, window_ms: u64) -> Vec<&Member> {
        self.cluster
            .live_active(now.monotonic_ms.saturating_sub(window_ms))
            .filter(|member| member.seen_since_unreachable())
            .collect()
    }

    /// Every heartbeat interval, an HA node asks all its trusted peers how they stand, so a
    /// newer ballot reaches it through any of them, not only the node it follows.
    pub(super) fn check_peers_when_due(&mut self, now: Now, commands: &mut Vec<Command>) {
        if !self.durable.config.enabled
            || self.peer_check.in_flight
            || now.monotonic_ms < self.peer_check.next_at_ms
        {
            return;
        }
        self.start_peer_check(now, commands);
    }

    fn start_peer_check(&mut self, now: Now, commands: &mut Vec<Command>) {
        self.peer_check.in_flight = true;
        self.peer_check.started_at_ms = now.monotonic_ms;
        self.peer_check.answered = 0;
        self.peer_check.unanswered = 0;
        commands.push(Command::CheckPeers);
    }

    pub(super) fn peers_checked(&mut self, now: Now, commands: &mut Vec<Command>) {
        self.peer_check.in_flight = false;
        self.peer_check.next_at_ms =
            now.monotonic_ms + self.durable.config.heartbeat_interval.as_millis();
        if self
            .frozen_at_ms
            .is_some_and(|frozen| frozen >= self.peer_check.started_at_ms)
        {
            // Answers from before the freeze say nothing of now: ask again.
            self.start_peer_check(now, commands);
            return;
        }
        if !self.checking_peers {
            return;
        }
        if self.frozen_pending && self.peer_check.answered == 0 && self.peer_check.unanswered > 0 {
            // After a freeze, silence proves nothing: another node may have taken over behind
            // it. Stay Not Available and ask again next interval.
            log(
                commands,
                Level::Warn,
                "no trusted peer answered since this node was frozen: it stays Not Available \
                 until one does (it cannot tell whether another node took over meanwhile)",
            );
            return;
        }
        self.checking_peers = false;
        if self.durable.fenced.is_some() {
            return;
        }
        if self.durable.epoch_adopted() {
            // Resuming in an epoch another node took would make two claims of one counter.
            let why = format!(
                "started as {}; its epoch {} came from another node's history (a sync) and no \
                 peer is Active in it or a newer one",
                self.durable.config.mode, self.durable.epoch
            );
            self.promote(now, &why, commands);
            return;
        }
        log(
            commands,
            Level::Info,
            format!(
                "no peer is Active in a newer epoch; serving as Active in epoch {}",
                self.durable.epoch
            ),
        );
        self.serve(State::Active, commands);
    }

    /// The runtime noticed that this process made no progress for `gap_ms`.
    pub(super) fn frozen(&mut self, now: Now, gap_ms: u64, commands: &mut Vec<Command>) {
        self.frozen_at_ms = Some(now.monotonic_ms);
        let serving = self.status.state == State::Active && self.durable.config.enabled;
        if !serving && !self.checking_peers {
            log(
                commands,
                Level::Warn,
                format!(
                    "this node was frozen for {gap_ms} ms (a stopped process, a suspended VM or a \
                     stall); timeouts that ran out meanwhile are not counted against its peers"
                ),
            );
            commands.push(Command::ClearFrozen);
            return;
        }
        log(
            commands,
            Level::Warn,
            format!(
                "this node was frozen for {gap_ms} ms (a stopped process, a suspended VM or a \
                 stall), long enough for a peer to have taken over: it acknowledges nothing and \
                 asks its trusted peers whether one holds a newer ballot before it serves again"
            ),
        );
        self.frozen_pending = true;
        self.checking_peers = true;
        self.serve(State::NotAvailable, commands);
        if !self.peer_check.in_flight {
            self.start_peer_check(now, commands);
        }
    }

    /// After any news of the other nodes: an Active node (or one about to be) that learns of a
    /// newer claim steps down; the alarms are raised or cleared.
    pub(super) fn check_claims(&mut self, now: Now, commands: &mut Vec<Command>) {
        let serving = (self.status.state == State::Active && self.durable.config.enabled)
            || self.checking_peers;
        let own = Ballot::new(self.durable.epoch, self.node_id.clone());
        if serving && self.durable.fenced.is_none() {
            let newer = self
                .cluster
                .members()
                .filter_map(|member| member.claim().map(|claim| (claim, member)))
                // An adopted epoch's ballot is its holder's: any claim in it is newer than
                // anything this node could say of itself.
                .filter(|(claim, _)| {
                    *claim > own
                        || (self.durable.epoch_adopted() && claim.epoch >= self.durable.epoch)
                })
                .max_by(|a, b| a.0.cmp(&b.0));
            if let Some((claim, member)) = newer {
                let holder = member.node_name.clone();
                let via = match &member.source {
                    crate::cluster::Source::Gossip { via } => Some(via.clone()),
                    crate::cluster::Source::Direct => None,
                };
                self.fence(&claim, &holder, via.as_deref(), commands);
            }
        }
        self.check_dual_active(now, commands);
        self.warn_incomplete_trust(commands);
    }

    /// Raises the dual-Active alarm while two nodes of the HA group are Active at once, this
    /// one included, and clears it when they are not.
    pub(super) fn check_dual_active(&mut self, now: Now, commands: &mut Vec<Command>) {
        if !self.started {
            return;
        }
        let serving = self.status.state == State::Active && self.status.ha_enabled;
        let promoted_at = self.promoted_at_ms.filter(|_| serving);
        let mut active: Vec<String> = self
            .live_active_members(now, self.live_window_ms())
            .into_iter()
            .filter(|member| promoted_at.is_none_or(|at| member.seen_at_monotonic_ms > at))
            .map(|member| {
                let how = match &member.source {
                    crate::cluster::Source::Direct => String::new(),
                    crate::cluster::Source::Gossip { via } => format!(", through {via}"),
                };
                format!("{} (epoch {}{how})", member.node_name, member.epoch)
            })
            .collect();
        if serving {
            active.insert(0, format!("this node (epoch {})", self.durable.epoch));
        }
        let alarm = (active.len() >= 2).then(|| active.join(" and "));
        match (&self.dual_active, alarm) {
            (None, Some(who)) => {
                let message = format!(
                    "two nodes of the HA group are Active at once: {who}. The one with the older \
                     ballot steps down as soon as it learns of the newer one; if this lasts, \
                     check the links between the nodes and that each trusts the others \
                     (`tandem ha status` shows what each node knows)"
                );
                log(commands, Level::Error, message.clone());
                commands.push(Command::Notify {
                    notification: Notification::DualActive,
                    message,
                });
                self.dual_active = Some(who);
            }
            (Some(_), None) => {
                log(
                    commands,
                    Level::Info,
                    "only one node of the HA group is Active again",
                );
                self.dual_active = None;
            }
            (Some(_), Some(who)) => self.dual_active = Some(who),
            (None, None) => {}
        }
    }

    /// Nodes this node knows only through gossip: it cannot check them itself, so a newer ballot
    /// of theirs reaches it only while the node in between is up.
    pub(super) fn trust_warnings(&self) -> Vec<String> {
        if !self.durable.config.enabled {
            return Vec::new();
        }
        self.cluster
            .members()
            .filter(|member| !member.direct)
            .map(|member| {
                let via = match &member.source {
                    crate::cluster::Source::Gossip { via } => via.as_str(),
                    crate::cluster::Source::Direct => "another node",
                };
                let address = member.address.as_deref().unwrap_or("HOST:PORT");
                format!(
                    "{name} ({address}) is known only through {via}: this node cannot check it \
                     itself, so news of a newer ballot there reaches it only while {via} is up. \
                     Add it on this node with `tandem ha trusted-hosts add {address} --key KEY` \
                     (KEY: what `tandem ha local-key` prints on {name}), and this node on {name}",
                    name = member.node_name
                )
            })
            .collect()
    }

    fn warn_incomplete_trust(&mut self, commands: &mut Vec<Command>) {
        if !self.durable.config.enabled {
            return;
        }
        let new: Vec<String> = self
            .cluster
            .members()
            .filter(|member| !member.direct)
            .map(|member| member.node_id.clone())
            .filter(|id| !self.trust_warned.contains(id))
            .collect();
        if new.is_empty() {
            return;
        }
        if self.trust_warned.len() + new.len() > crate::cluster::KNOWN_NODES_MAX {
            // Bounded like the view itself: nodes long gone may be warned about again.
            self.trust_warned.clear();
        }
        self.trust_warned.extend(new);
        for warning in self.trust_warnings() {
            log(commands, Level::Warn, warning);
        }
    }

    /// A live Active node of the HA group other than this one, as a sentence for a refusal.
    fn live_active_elsewhere(&self, now: Now) -> Option<String> {
        let member = self
            .live_active_members(now, self.refusal_window_ms().max(REFUSAL_WINDOW_MIN_MS))
            .into_iter()
            .max_by_key(|member| member.seen_at_monotonic_ms)?;
        let ago = now.monotonic_ms.saturating_sub(member.seen_at_monotonic_ms);
        let how = match &member.source {
            crate::cluster::Source::Direct => String::new(),
            crate::cluster::Source::Gossip { via } => format!(" through {via}"),
        };
        Some(format!(
            "{} is Active in epoch {} (seen {ago} ms ago{how})",
            member.node_name, member.epoch
        ))
    }

    /// Why making this node Active in the HA group now would break "one Active node".
    pub(super) fn refuse_entering_active(&self, now: Now) -> Option<String> {
        let elsewhere = self.live_active_elsewhere(now)?;
        Some(format!(
            "{elsewhere}: making this node Active too would give the fleet two Active nodes until \
             that one learns of it, and writes it takes meanwhile would end in a divergence \
             export instead of being served. For a failback with nothing lost, make this node \
             its Standby and run `tandem ha switchover` here once it is in step; if that node is \
             really gone or must stop, stop it first, or repeat with --force"
        ))
    }

    /// Why making this node leave Active now would leave the fleet without an Active node.
    pub(super) fn refuse_leaving_active(&self, now: Now) -> Option<String> {
        let serving = self.status.state == State::Active && self.status.ha_enabled;
        if !serving || self.live_active_elsewhere(now).is_some() {
            return None;
        }
        Some(
            "this node is the only Active node of the HA group: making it a Standby would leave \
             the fleet with no Active node. To hand over with nothing lost, make the other node \
             this node's Standby and run `tandem ha switchover` on it; to stop serving anyway, \
             repeat with --force"
                .into(),
        )
    }
}

impl Controller {
    /// Why saving `next` over `before` (a role change) would break "one Active node", as the
    /// field error an operator sees.
    pub(super) fn refuse_role(
        &self,
        now: Now,
        before: &HaConfig,
        next: &HaConfig,
    ) -> Option<ConfigError> {
        let active_in_group = self.status.state == State::Active && self.status.ha_enabled;
        let next_active = next.enabled
            && matches!(
                (next.mode, next.node_status),
                (Mode::Primary, _) | (Mode::Secondary, NodeStatusSetting::Active)
            );
        let problem = if next_active && !active_in_group {
            self.refuse_entering_active(now)
        } else if active_in_group && next.enabled && !next_active {
            self.refuse_leaving_active(now)
        } else {
            None
        }?;
        let (field, value) = if before.enabled != next.enabled {
            ("enabled", next.enabled.to_string())
        } else if before.mode != next.mode {
            ("mode", next.mode.to_string())
        } else {
            ("nodeStatus", format!("{:?}", next.node_status))
        };
        Some(ConfigError {
            problems: vec![crate::config::FieldError {
                field,
                value,
                problem: format!("refused: {problem}"),
            }],
        })
    }
}
