//! The HA Configuration window (guide: Step 6 and Table 4) as data: every field, its default,
//! its validation, and the warnings for legal but unwise choices.
//!
//! The configuration is node-local (never replicated): each node says what it is and whom it
//! follows. It is changed as a whole, by applying a [`ConfigChange`] (the CLI's flags, the
//! System Manager API's JSON) to the current one and validating the result.

use crate::Mode;
use crate::address::PeerAddress;
use crate::witness::{WitnessScheme, WitnessTls, WitnessUrl, normalize_sha256};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A length of time, written as operators write it: `250ms`, `10s`, `5m`, `2h`, `1d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    millis: u64,
}

impl Span {
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs * 1_000,
        }
    }

    pub const fn from_minutes(minutes: u64) -> Self {
        Self::from_secs(minutes * 60)
    }

    pub const fn as_millis(self) -> u64 {
        self.millis
    }
}

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl fmt::Display for Span {
    /// The largest unit that shows the value exactly: `90s` stays `90s`, `3600000ms` is `1h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS {
            if self.millis.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.millis / size);
            }
        }
        write!(f, "{}ms", self.millis)
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let usage = || {
            format!(
                "`{text}` is not a duration; write a whole number and a unit: ms, s, m (minutes), \
                 h or d, e.g. `10s` or `60m`"
            )
        };
        let value: u64 = number.parse().map_err(|_| usage())?;
        let size = match unit.trim() {
            "ms" => 1,
            "s" | "sec" | "secs" | "seconds" => 1_000,
            "m" | "min" | "mins" | "minutes" => 60_000,
            "h" | "hour" | "hours" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            _ => return Err(usage()),
        };
        value
            .checked_mul(size)
            .map(Span::from_millis)
            .ok_or_else(usage)
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// StartTime (GMT): the time of day the schedule counts from, in minutes after midnight UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StartTime {
    minute_of_day: u16,
}

impl StartTime {
    pub const MIDNIGHT: StartTime = StartTime { minute_of_day: 0 };

    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        (hour < 24 && minute < 60).then_some(Self {
            minute_of_day: u16::from(hour) * 60 + u16::from(minute),
        })
    }

    pub fn minute_of_day(self) -> u16 {
        self.minute_of_day
    }
}

impl fmt::Display for StartTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}",
            self.minute_of_day / 60,
            self.minute_of_day % 60
        )
    }
}

impl FromStr for StartTime {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage =
            || format!("`{text}` is not a time of day; write HH:MM in GMT (UTC), 00:00 to 23:59");
        let (hour, minute) = text.trim().split_once(':').ok_or_else(usage)?;
        if hour.is_empty() || hour.len() > 2 || minute.len() != 2 {
            return Err(usage());
        }
        let hour: u8 = hour.parse().map_err(|_| usage())?;
        let minute: u8 = minute.parse().map_err(|_| usage())?;
        StartTime::new(hour, minute).ok_or_else(usage)
    }
}

impl Serialize for StartTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StartTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Node Status as a setting (guide: Table 4, Secondary mode only): whether the Secondary is a
/// Standby or has been made Active (by a failover, or by an operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStatusSetting {
    Standby,
    Active,
}

/// If Failure Detected (guide: Step 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Promote to Primary: the Secondary takes over.
    Promote,
    /// Keep in Standby: failure is detected and notified; the Secondary stays Standby.
    Standby,
}

impl fmt::Display for OnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnFailure::Promote => "Promote to Primary",
            OnFailure::Standby => "Keep in Standby",
        })
    }
}

/// If Behind at Failure (beyond the guide, continuous and synchronous replication): what a
/// Standby does when the Primary fails while this node may lack writes the Primary acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBehind {
    /// Hold the automatic promotion, say why, and leave the choice to an operator (`tandem
    /// failover mode primary` promotes anyway). As Patroni's `maximum_lag_on_failover`: a
    /// failover never silently discards more than the lag bound.
    #[default]
    Standby,
    /// Promote anyway: the service returns at once, and the writes this node lacks stay on the
    /// old Primary (saved to its divergence file when it resyncs).
    Promote,
}

impl fmt::Display for OnBehind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnBehind::Standby => "standby",
            OnBehind::Promote => "promote",
        })
    }
}

/// Replication (beyond the guide): how a Standby copies its Primary's database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// The guide's StartTime / Run Every schedule: a failover loses the writes since the last
    /// sync (they stay on the old Primary and are saved when it resyncs).
    #[default]
    Scheduled,
    /// A replication stream kept open: each write reaches the Standby as it commits (a lag of
    /// milliseconds); the schedule is not used.
    Continuous,
    /// As continuous, and the Primary acknowledges a write only once the Standby holds it
    /// durably: a failover loses no acknowledged write. What happens when the Standby is gone
    /// is `on_standby_lost`.
    Synchronous,
}

/// Synchronous replication: what the Primary does when its Standby stops confirming writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStandbyLost {
    /// Writes wait until a Standby confirms them again (no acknowledged write can be lost). Note
    /// that after a failover the new Active node has no Standby until the old one is resynced,
    /// so it takes no writes until then.
    Block,
    /// After `synchronous_timeout` without a confirmation, writes are acknowledged without one
    /// (continuous replication) and an alarm is raised; synchronous again once the Standby has
    /// caught up. The default: a node left alone after a failover keeps serving.
    #[default]
    Continuous,
}

/// Notification Settings: how the connection to the SMTP relay is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP upgraded with STARTTLS, which the relay must offer (usually port 25 or 587).
    /// The default: notifications name hosts and failures, which should not cross a network in
    /// clear text.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption: only for a relay on a trusted network (or on the node itself).
    None,
}

impl fmt::Display for SmtpSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpSecurity::Starttls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        })
    }
}

impl fmt::Display for OnStandbyLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnStandbyLost::Block => "block",
            OnStandbyLost::Continuous => "continuous",
        })
    }
}

pub const SYNCHRONOUS_TIMEOUT_MIN: Span = Span::from_millis(100);
pub const SYNCHRONOUS_TIMEOUT_MAX: Span = Span::from_minutes(10);
/// Below this the lag report would flap with ordinary scheduling noise; above it a Standby
/// could be a day behind without saying so.
pub const LAG_BOUND_MIN: Span = Span::from_millis(10);
pub const LAG_BOUND_MAX: Span = Span::from_minutes(24 * 60);

impl fmt::Display for ReplicationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplicationMode::Scheduled => "scheduled",
            ReplicationMode::Continuous => "continuous",
            ReplicationMode::Synchronous => "synchronous",
        })
    }
}

/// The guide's advice: replicate no more often than every 60 minutes (scheduled mode).
pub const RUN_EVERY_ADVISED_MIN: Span = Span::from_minutes(60);
/// Bounds that keep a typo from producing a node that heartbeats a thousand times a second or
/// never: each is named in the error that enforces it.
pub const RUN_EVERY_MIN: Span = Span::from_minutes(1);
pub const RUN_EVERY_MAX: Span = Span::from_minutes(30 * 24 * 60);
pub const HEARTBEAT_INTERVAL_MIN: Span = Span::from_millis(100);
pub const HEARTBEAT_INTERVAL_MAX: Span = Span::from_minutes(60);
pub const RECHECK_INTERVAL_MIN: Span = Span::from_millis(100);
pub const RECHECK_INTERVAL_MAX: Span = Span::from_minutes(60);
pub const HEARTBEAT_FAILURES_MAX: u32 = 100;
/// Witnesses consulted before a promotion; each costs a probe on the failover path.
pub const WITNESSES_MAX: usize = 8;
pub const NOTIFY_EMAILS_MAX: usize = 16;

/// The whole HA Configuration window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HaConfig {
    /// High Availability: Enable / Disable.
    pub enabled: bool,
    pub mode: Mode,
    /// Secondary mode only: Standby, or Active after a promotion.
    pub node_status: NodeStatusSetting,
    /// Secondary mode: the Primary's replication address, a Trusted Host (stored as the
    /// canonical `host:port`; `HOST` alone means port 22).
    pub primary: Option<PeerAddress>,
    /// Scheduled (the guide) or continuous. Absent in configurations saved before it existed.
    #[serde(default)]
    pub replication: ReplicationMode,
    /// Synchronous replication: what the Primary does when the Standby stops confirming.
    #[serde(default)]
    pub on_standby_lost: OnStandbyLost,
    /// Synchronous replication with `on_standby_lost = continuous`: how long a write waits for
    /// the Standby's confirmation before the Primary falls back to continuous replication.
    #[serde(default = "default_synchronous_timeout")]
    pub synchronous_timeout: Span,
    /// Continuous and synchronous replication: a Standby whose lag exceeds this, or whose
    /// stream is down, reports itself behind (`tandem ha status`, metrics).
    #[serde(default = "default_lag_bound")]
    pub lag_bound: Span,
    /// If Behind at Failure: whether a Standby that may lack acknowledged writes promotes itself
    /// when the Primary fails (continuous: it was behind by more than `lag_bound` when the
    /// Primary last answered; synchronous with `on_standby_lost = continuous`: it had not
    /// confirmed writes for `synchronous_timeout`, so the Primary may have gone on without it).
    #[serde(default)]
    pub on_behind: OnBehind,
    /// StartTime (GMT).
    pub start_time: StartTime,
    pub run_every: Span,
    pub heartbeat_interval: Span,
    /// Consecutive heartbeat failures before failover.
    pub heartbeat_failures: u32,
    /// Re-check interval: the wait before the next attempt after a failed heartbeat.
    pub recheck_interval: Span,
    /// If Failure Detected.
    pub on_failure: OnFailure,
    /// Witness URLs consulted before promoting (beyond the guide): each answers whether it can
    /// still reach the Primary. Empty: promote on heartbeat failures alone, as the guide does.
    pub witnesses: Vec<WitnessUrl>,
    /// `https://` witnesses: a PEM file of the CA certificates that signed their certificates
    /// (absolute path). One of this, `witness_pinned_sha256` and `witness_insecure`.
    #[serde(default)]
    pub witness_ca_file: Option<String>,
    /// `https://` witnesses: SHA-256 fingerprints of their certificates (lowercase hex).
    #[serde(default)]
    pub witness_pinned_sha256: Vec<String>,
    /// `https://` witnesses: accept any certificate (labs only).
    #[serde(default)]
    pub witness_insecure: bool,
    /// Notification Settings.
    pub notify_email: Vec<String>,
    pub notify_on_sync_completion: bool,
    pub notify_on_failure: bool,
    /// The SMTP relay that carries notification e-mail, `HOST[:PORT]`. None: notifications are
    /// only recorded in the node's Notifications log.
    #[serde(default)]
    pub smtp_relay: Option<String>,
    #[serde(default)]
    pub smtp_security: SmtpSecurity,
    /// The sender address; `tandem@localhost` when not set.
    #[serde(default)]
    pub smtp_from: Option<String>,
    /// A PEM file of CA certificates added to the public web PKI roots, for a relay whose
    /// certificate a private CA signed. None: the public roots alone.
    #[serde(default)]
    pub smtp_ca_file: Option<String>,
}

impl Default for HaConfig {
    /// The guide's defaults: HA disabled; heartbeat every 10 s; 3 failures; re-check 5 s; Run
    /// Every 60 minutes from 00:00 GMT; Promote to Primary.
    fn default() -> Self {
        Self {
            enabled: false,
            mode: Mode::Primary,
            node_status: NodeStatusSetting::Standby,
            primary: None,
            replication: ReplicationMode::Scheduled,
            on_standby_lost: OnStandbyLost::Continuous,
            synchronous_timeout: default_synchronous_timeout(),
            lag_bound: default_lag_bound(),
            on_behind: OnBehind::Standby,
            start_time: StartTime::MIDNIGHT,
            run_every: Span::from_minutes(60),
            heartbeat_interval: Span::from_secs(10),
            heartbeat_failures: 3,
            recheck_interval: Span::from_secs(5),
            on_failure: OnFailure::Promote,
            witnesses: Vec::new(),
            witness_ca_file: None,
            witness_pinned_sha256: Vec::new(),
            witness_insecure: false,
            notify_email: Vec::new(),
            notify_on_sync_completion: false,
            notify_on_failure: true,
            smtp_relay: None,
            smtp_security: SmtpSecurity::Starttls,
            smtp_from: None,
            smtp_ca_file: None,
        }
    }
}

fn default_synchronous_timeout() -> Span {
    Span::from_secs(5)
}

fn default_lag_bound() -> Span {
    Span::from_secs(5)
}

/// A change to some fields, from CLI flags or an API body. Absent fields keep their value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigChange {
    pub enabled: Option<bool>,
    pub mode: Option<Mode>,
    pub node_status: Option<NodeStatusSetting>,
    /// `Some("")` clears the Primary.
    pub primary: Option<String>,
    pub replication: Option<ReplicationMode>,
    pub on_standby_lost: Option<OnStandbyLost>,
    pub synchronous_timeout: Option<Span>,
    pub lag_bound: Option<Span>,
    pub on_behind: Option<OnBehind>,
    pub start_time: Option<StartTime>,
    pub run_every: Option<Span>,
    pub heartbeat_interval: Option<Span>,
    pub heartbeat_failures: Option<u32>,
    pub recheck_interval: Option<Span>,
    pub on_failure: Option<OnFailure>,
    pub witnesses: Option<Vec<String>>,
    /// `Some("")` clears the CA file.
    pub witness_ca_file: Option<String>,
    /// `Some([])` clears the pins.
    pub witness_pinned_sha256: Option<Vec<String>>,
    pub witness_insecure: Option<bool>,
    pub notify_email: Option<Vec<String>>,
    pub notify_on_sync_completion: Option<bool>,
    pub notify_on_failure: Option<bool>,
    /// `Some("")` clears the relay (notifications are then only logged).
    pub smtp_relay: Option<String>,
    pub smtp_security: Option<SmtpSecurity>,
    /// `Some("")` restores the default sender.
    pub smtp_from: Option<String>,
    /// `Some("")` returns to the public roots.
    pub smtp_ca_file: Option<String>,
    /// Not stored: carry out a role change the controller would refuse because it breaks "one
    /// Active node" (`--force`; `"force": true` in the API).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// One value that cannot be saved: which field, what was given, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldError {
    pub field: &'static str,
    pub value: String,
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.field, self.value, self.problem)
    }
}

/// A configuration that cannot be saved: every problem with it, not just the first, so an
/// operator fixes them in one go (as `tandem.toml` is checked).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigError {
    /// Never empty.
    pub problems: Vec<FieldError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            problems => {
                write!(f, "{} problems:", problems.len())?;
                for problem in problems {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl ConfigError {
    /// The fields refused, in the order found.
    pub fn fields(&self) -> Vec<&'static str> {
        self.problems.iter().map(|problem| problem.field).collect()
    }
}

/// A legal choice the guide advises against, with the trade-off explained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigWarning {
    pub field: String,
    pub message: String,
}

/// Collects every problem of a configuration.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn push(&mut self, field: &'static str, value: impl fmt::Display, problem: impl Into<String>) {
        self.0.push(FieldError {
            field,
            value: value.to_string(),
            problem: problem.into(),
        });
    }

    fn has(&self, field: &str) -> bool {
        self.0.iter().any(|problem| problem.field == field)
    }

    fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: self.0 })
        }
    }
}

fn check_span(problems: &mut Problems, field: &'static str, value: Span, min: Span, max: Span) {
    if value < min || value > max {
        problems.push(field, value, format!("must be between {min} and {max}"));
    }
}

fn check_email(problems: &mut Problems, field: &'static str, address: &str) {
    let valid = match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                // `localhost` for a relay on the node itself (and the default sender).
                && (domain.contains('.') || domain == "localhost")
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !address
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ',')
                && !domain.contains('@')
        }
        None => false,
    };
    if !valid {
        problems.push(
            field,
            address,
            "not an e-mail address; write one address per value, e.g. ops@example.com",
        );
    }
}

/// The change's text fields parsed into the configuration's types; every value that does not
/// parse is a problem, and the field keeps its current value.
fn take_parsed(next: &mut HaConfig, change: &ConfigChange, problems: &mut Problems) {
    let optional = |text: &String| {
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    };
    if let Some(primary) = &change.primary {
        match optional(primary).map(|text| PeerAddress::parse(&text)) {
            None => next.primary = None,
            Some(Ok(address)) => next.primary = Some(address),
            Some(Err(error)) => problems.push(
                "primary",
                &error.value,
                format!(
                    "{} (the Primary's replication listener, a Trusted Host)",
                    error.problem
                ),
            ),
        }
    }
    if let Some(witnesses) = &change.witnesses {
        let mut parsed = Vec::new();
        for witness in witnesses {
            match WitnessUrl::parse(witness) {
                Ok(url) => parsed.push(url),
                Err(problem) => problems.push("witnesses", witness, problem),
            }
        }
        if !problems.has("witnesses") {
            next.witnesses = parsed;
        }
    }
    if let Some(pins) = &change.witness_pinned_sha256 {
        let mut normalized = Vec::new();
        for pin in pins {
            match normalize_sha256(pin) {
                Ok(pin) => normalized.push(pin),
                Err(problem) => problems.push("witnessPinnedSha256", pin, problem),
            }
        }
        if !problems.has("witnessPinnedSha256") {
            next.witness_pinned_sha256 = normalized;
        }
    }
    if let Some(relay) = &change.smtp_relay {
        next.smtp_relay = optional(relay);
    }
    if let Some(from) = &change.smtp_from {
        next.smtp_from = optional(from);
    }
    if let Some(ca_file) = &change.smtp_ca_file {
        next.smtp_ca_file = optional(ca_file);
    }
    if let Some(ca_file) = &change.witness_ca_file {
        next.witness_ca_file = optional(ca_file);
    }
}

impl HaConfig {
    /// `self` with `change` applied, validated: every problem of the change and of the
    /// resulting configuration at once.
    pub fn with(
        &self,
        change: &ConfigChange,
    ) -> Result<(HaConfig, Vec<ConfigWarning>), ConfigError> {
        let mut next = self.clone();
        macro_rules! take {
            ($field:ident) => {
                if let Some(value) = &change.$field {
                    next.$field = value.clone();
                }
            };
        }
        take!(enabled);
        take!(mode);
        take!(node_status);
        take!(replication);
        take!(on_standby_lost);
        take!(synchronous_timeout);
        take!(lag_bound);
        take!(on_behind);
        take!(start_time);
        take!(run_every);
        take!(heartbeat_interval);
        take!(heartbeat_failures);
        take!(recheck_interval);
        take!(on_failure);
        take!(witness_insecure);
        take!(notify_email);
        take!(notify_on_sync_completion);
        take!(notify_on_failure);
        take!(smtp_security);
        let mut problems = Problems::default();
        take_parsed(&mut next, change, &mut problems);
        // A node made Primary has no Node Status; keep the setting neutral for a later switch.
        if change.mode == Some(Mode::Primary) && change.node_status.is_none() {
            next.node_status = NodeStatusSetting::Standby;
        }
        match next.validate() {
            Ok(warnings) => problems.into_result().map(|()| (next, warnings)),
            Err(error) => {
                // A field whose value did not parse kept its old value: what the rest of the
                // configuration says about it would only mislead.
                for problem in error.problems {
                    if !problems.has(problem.field) {
                        problems.0.push(problem);
                    }
                }
                Err(ConfigError {
                    problems: problems.0,
                })
            }
        }
    }

    /// Every field's bounds, and the combinations that cannot work: every problem, not just the
    /// first; warnings for the legal but unwise choices.
    pub fn validate(&self) -> Result<Vec<ConfigWarning>, ConfigError> {
        let mut problems = Problems::default();
        self.check_bounds(&mut problems);
        self.check_roles(&mut problems);
        self.check_witnesses(&mut problems);
        self.check_synchronous_without_a_third_party(&mut problems);
        self.check_notifications(&mut problems);
        problems.into_result()?;
        Ok(self.warnings())
    }

    fn check_bounds(&self, problems: &mut Problems) {
        check_span(
            problems,
            "runEvery",
            self.run_every,
            RUN_EVERY_MIN,
            RUN_EVERY_MAX,
        );
        check_span(
            problems,
            "synchronousTimeout",
            self.synchronous_timeout,
            SYNCHRONOUS_TIMEOUT_MIN,
            SYNCHRONOUS_TIMEOUT_MAX,
        );
        check_span(
            problems,
            "lagBound",
            self.lag_bound,
            LAG_BOUND_MIN,
            LAG_BOUND_MAX,
        );
        check_span(
            problems,
            "heartbeatInterval",
            self.heartbeat_interval,
            HEARTBEAT_INTERVAL_MIN,
            HEARTBEAT_INTERVAL_MAX,
        );
        check_span(
            problems,
            "recheckInterval",
            self.recheck_interval,
            RECHECK_INTERVAL_MIN,
            RECHECK_INTERVAL_MAX,
        );
        if !(1..=HEARTBEAT_FAILURES_MAX).contains(&self.heartbeat_failures) {
            problems.push(
                "heartbeatFailures",
                self.heartbeat_failures,
                format!("must be between 1 and {HEARTBEAT_FAILURES_MAX}"),
            );
        }
    }

    fn check_roles(&self, problems: &mut Problems) {
        if self.enabled && self.mode == Mode::Secondary && self.primary.is_none() {
            problems.push(
                "primary",
                "(none)",
                "a Secondary with HA enabled needs its Primary: add --primary HOST[:PORT] \
                 (a Trusted Host's replication address)",
            );
        }
        if self.mode == Mode::Primary && self.node_status == NodeStatusSetting::Active {
            problems.push(
                "nodeStatus",
                "Active",
                "Node Status applies to Secondary mode only; a Primary is Active by its mode",
            );
        }
    }

    /// The witnesses, and for `https://` ones exactly one way to check their certificates.
    fn check_witnesses(&self, problems: &mut Problems) {
        if self.witnesses.len() > WITNESSES_MAX {
            problems.push(
                "witnesses",
                self.witnesses.len(),
                format!("at most {WITNESSES_MAX} witnesses"),
            );
        }
        if let Some(ca_file) = &self.witness_ca_file
            && !ca_file.starts_with('/')
        {
            problems.push(
                "witnessCaFile",
                ca_file,
                "write the absolute path of a PEM file of the CA certificates that signed the \
                 witnesses' certificates, e.g. /etc/tandem/witness-ca.pem",
            );
        }
        let choices = [
            self.witness_ca_file.is_some(),
            !self.witness_pinned_sha256.is_empty(),
            self.witness_insecure,
        ];
        let chosen = choices.iter().filter(|chosen| **chosen).count();
        if chosen > 1 {
            problems.push(
                "witnessTls",
                self.witness_tls_shown(),
                "set only one of --witness-ca-file, --witness-pin and --witness-insecure \
                 (clear the others with --witness-ca-file '', --witness-pin '' or \
                 --witness-insecure false)",
            );
        }
        let https = self
            .witnesses
            .iter()
            .find(|url| url.scheme() == WitnessScheme::Https);
        if let Some(url) = https
            && chosen == 0
        {
            problems.push(
                "witnessTls",
                url,
                "say how this node checks an https:// witness's certificate: \
                 --witness-ca-file /path/ca.pem (the CA that signed it), --witness-pin SHA256 \
                 (the certificate's fingerprint, as the traffic controller's pinned_sha256) or \
                 --witness-insecure (labs only)",
            );
        }
    }

    fn witness_tls_shown(&self) -> String {
        let mut shown = Vec::new();
        if let Some(ca_file) = &self.witness_ca_file {
            shown.push(format!("witnessCaFile {ca_file}"));
        }
        if !self.witness_pinned_sha256.is_empty() {
            shown.push(format!(
                "witnessPinnedSha256 {}",
                self.witness_pinned_sha256.join(",")
            ));
        }
        if self.witness_insecure {
            shown.push("witnessInsecure true".into());
        }
        shown.join(", ")
    }

    /// The Primary's address as the controller's commands carry it: the canonical
    /// `host:port`, which parses back to the same address.
    pub fn primary_text(&self) -> Option<String> {
        self.primary.as_ref().map(ToString::to_string)
    }

    /// How `https://` witnesses' certificates are checked; `None` when nothing is chosen (only
    /// `http://` witnesses, which validation ensures).
    pub fn witness_tls(&self) -> Option<WitnessTls> {
        if let Some(ca_file) = &self.witness_ca_file {
            Some(WitnessTls::CaFile(ca_file.clone()))
        } else if !self.witness_pinned_sha256.is_empty() {
            Some(WitnessTls::Pinned(self.witness_pinned_sha256.clone()))
        } else {
            self.witness_insecure.then_some(WitnessTls::Insecure)
        }
    }

    /// Synchronous replication that falls back to continuous, with automatic promotion and no
    /// third party, can lose acknowledged writes: with the link between the nodes cut, after
    /// the timeout the Primary acknowledges without its Standby, while the Standby, not knowing,
    /// promotes itself. Refused on both nodes (roles swap in a switchover).
    fn check_synchronous_without_a_third_party(&self, problems: &mut Problems) {
        if self.replication == ReplicationMode::Synchronous
            && self.on_standby_lost == OnStandbyLost::Continuous
            && self.on_failure == OnFailure::Promote
            && self.witnesses.is_empty()
        {
            problems.push(
                "onStandbyLost",
                OnStandbyLost::Continuous,
                "synchronous replication that goes on without the Standby (onStandbyLost = \
                 continuous), with Promote to Primary and no witness, can lose acknowledged \
                 writes: when only the link between the nodes fails, after synchronousTimeout \
                 the Primary acknowledges writes without its Standby, while the Standby, not \
                 knowing, promotes itself, and those writes are lost. Choose one: \
                 --if-standby-lost block (writes wait for the Standby; nothing acknowledged is \
                 lost), --on-failure standby (Keep in Standby: an operator promotes), or a \
                 witness (--witness URL) that tells a cut link from a dead Primary",
            );
        }
    }

    fn check_notifications(&self, problems: &mut Problems) {
        if self.notify_email.len() > NOTIFY_EMAILS_MAX {
            problems.push(
                "notifyEmail",
                self.notify_email.len(),
                format!("at most {NOTIFY_EMAILS_MAX} addresses"),
            );
        }
        for address in &self.notify_email {
            check_email(problems, "notifyEmail", address);
        }
        if let Some(relay) = &self.smtp_relay
            && let Err(error) = PeerAddress::parse(relay)
        {
            problems.push(
                "smtpRelay",
                &error.value,
                format!(
                    "{} (the SMTP relay; port 25 when omitted, 465 with --smtp-security tls)",
                    error.problem
                ),
            );
        }
        if let Some(from) = &self.smtp_from {
            check_email(problems, "smtpFrom", from);
        }
        if let Some(ca_file) = &self.smtp_ca_file
            && !ca_file.starts_with('/')
        {
            problems.push(
                "smtpCaFile",
                ca_file,
                "write the absolute path of a PEM file of CA certificates, e.g. \
                 /etc/ssl/certs/relay-ca.pem (the node reads it when it sends)",
            );
        }
    }

    /// The legal but unwise choices, each with its trade-off.
    fn warnings(&self) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        if !self.notify_email.is_empty() && self.smtp_relay.is_none() {
            warnings.push(ConfigWarning {
                field: "smtpRelay".into(),
                message: "notification addresses are set but no SMTP relay: notifications are \
                          recorded in the Notifications log and not e-mailed until you set \
                          --smtp-relay HOST[:PORT]"
                    .into(),
            });
        }
        if self.notify_email.is_empty() && self.smtp_relay.is_some() {
            warnings.push(ConfigWarning {
                field: "notifyEmail".into(),
                message: "an SMTP relay is set but no notification address: nothing is e-mailed \
                          until you add --notify-email ADDR"
                    .into(),
            });
        }
        if self.run_every < RUN_EVERY_ADVISED_MIN && self.replication == ReplicationMode::Scheduled
        {
            warnings.push(ConfigWarning {
                field: "runEvery".into(),
                message: format!(
                    "Run Every {} is shorter than the advised {RUN_EVERY_ADVISED_MIN}: syncs may \
                     overlap (an overlapping sync is skipped) and add load on the Primary; a \
                     failover loses at most the writes since the last sync, so a shorter interval \
                     trades load for a smaller loss window",
                    self.run_every
                ),
            });
        }
        if self.replication == ReplicationMode::Synchronous
            && self.on_standby_lost == OnStandbyLost::Block
        {
            warnings.push(ConfigWarning {
                field: "onStandbyLost".into(),
                message: "synchronous replication with onStandbyLost = block: while the Standby \
                          is down or cut off, every write on the Primary waits for it (no \
                          acknowledged write can be lost), and after a failover the new Active \
                          node takes no writes until a Standby follows it again; choose \
                          continuous to keep taking writes, with an alarm, after \
                          synchronousTimeout"
                    .into(),
            });
        }
        // The slowest detection: the interval, the re-checks, and a timeout per failed
        // heartbeat (the runtime's is the Re-check interval, at least 200 ms); an idle stream's
        // knowledge may be a second older still. Witnesses, when set, add their answers.
        let detection = Span::from_millis(
            self.detection_time_max().as_millis()
                + u64::from(self.heartbeat_failures) * self.recheck_interval.as_millis().max(200)
                + 1_000,
        );
        if self.enabled
            && self.mode == Mode::Secondary
            && self.replication == ReplicationMode::Synchronous
            && self.on_standby_lost == OnStandbyLost::Continuous
            && self.on_failure == OnFailure::Promote
            && self.on_behind == OnBehind::Standby
            && self.synchronous_timeout <= detection
        {
            warnings.push(ConfigWarning {
                field: "synchronousTimeout".into(),
                message: format!(
                    "synchronousTimeout {} is not above the longest failure detection \
                     ({detection}: Heartbeat Interval, the re-checks and their timeouts, and a \
                     second of stream, plus any witnesses' answers; the Primary's own setting \
                     is what counts, so set the same on both nodes): by the time this Standby \
                     detects a \
                     failure, the Primary may have fallen back to continuous replication and \
                     acknowledged writes without it, so it holds the automatic promotion (If \
                     Behind at Failure = standby). Set --synchronous-timeout above {detection}, \
                     or --if-standby-lost block, or --if-behind promote to accept that loss \
                     (a witness that keeps records, as the traffic controller does, decides by \
                     its record instead: then this timing does not apply)",
                    self.synchronous_timeout
                ),
            });
        }
        if self.recheck_interval > self.heartbeat_interval {
            warnings.push(ConfigWarning {
                field: "recheckInterval".into(),
                message: format!(
                    "Re-check interval {} is longer than Heartbeat Interval {}: a failure is \
                     confirmed more slowly than the Primary is checked",
                    self.recheck_interval, self.heartbeat_interval
                ),
            });
        }
        warnings
    }

    /// Whether `notification` is e-mailed under Notify On: Sync Completion for completed syncs,
    /// Failure / this server becomes primary for everything else (each one is an event an
    /// operator must act on or at least know of). Every notification is logged regardless.
    pub fn emails(&self, notification: crate::machine::Notification) -> bool {
        use crate::machine::Notification;
        !self.notify_email.is_empty()
            && self.smtp_relay.is_some()
            && match notification {
                Notification::SyncCompleted => self.notify_on_sync_completion,
                _ => self.notify_on_failure,
            }
    }

    /// The longest time from the Primary's death to failure detection: the next heartbeat, then
    /// the re-checks.
    pub fn detection_time_max(&self) -> Span {
        Span::from_millis(
            self.heartbeat_interval.as_millis()
                + u64::from(self.heartbeat_failures.saturating_sub(1))
                    * self.recheck_interval.as_millis(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print_in_the_largest_exact_unit() {
        for (text, millis, shown) in [
            ("250ms", 250, "250ms"),
            ("10s", 10_000, "10s"),
            ("90s", 90_000, "90s"),
            ("60m", 3_600_000, "1h"),
            ("2 hours", 7_200_000, "2h"),
            ("1d", 86_400_000, "1d"),
        ] {
            let span: Span = text.parse().unwrap();
            assert_eq!(span.as_millis(), millis, "{text}");
            assert_eq!(span.to_string(), shown);
        }
        for bad in [
            "",
            "10",
            "s",
            "-5s",
            "1.5h",
            "10 parsecs",
            "99999999999999999999d",
        ] {
            let error = bad.parse::<Span>().unwrap_err();
            assert!(error.contains("not a duration"), "{bad}: {error}");
        }
    }

    #[test]
    fn start_times_are_hh_mm_gmt() {
        assert_eq!("13:00".parse::<StartTime>().unwrap().minute_of_day(), 780);
        assert_eq!("7:05".parse::<StartTime>().unwrap().to_string(), "07:05");
        for bad in ["24:00", "12:60", "1200", "12:5", "noon", ""] {
            assert!(bad.parse::<StartTime>().is_err(), "{bad}");
        }
    }

    #[test]
    fn notification_e_mail_follows_notify_on_and_needs_addresses_and_a_relay() {
        use crate::machine::Notification;
        let config = HaConfig::default();
        assert!(!config.emails(Notification::BecamePrimary), "no addresses");
        let (config, warnings) = config
            .with(&ConfigChange {
                notify_email: Some(vec!["ops@example.com".into()]),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(warnings[0].field, "smtpRelay");
        assert!(!config.emails(Notification::BecamePrimary), "no relay");
        let (config, warnings) = config
            .with(&ConfigChange {
                smtp_relay: Some("mail.example.com:587".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(warnings, vec![]);
        for notification in [
            Notification::BecamePrimary,
            Notification::SyncFailed,
            Notification::FailureDetected,
            Notification::Fenced,
            Notification::ReplicationDegraded,
        ] {
            assert!(config.emails(notification), "{notification:?}");
        }
        assert!(
            !config.emails(Notification::SyncCompleted),
            "off by default"
        );
        let (config, _) = config
            .with(&ConfigChange {
                notify_on_sync_completion: Some(true),
                notify_on_failure: Some(false),
                ..Default::default()
            })
            .unwrap();
        assert!(config.emails(Notification::SyncCompleted));
        assert!(!config.emails(Notification::BecamePrimary));
        let (config, _) = config
            .with(&ConfigChange {
                smtp_relay: Some(" ".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(config.smtp_relay, None, "an empty value clears the relay");
    }

    #[test]
    fn smtp_settings_are_validated() {
        let config = HaConfig::default();
        for (change, field, value) in [
            (
                ConfigChange {
                    smtp_relay: Some("mail example".into()),
                    ..Default::default()
                },
                "smtpRelay",
                "mail example",
            ),
            (
                ConfigChange {
                    smtp_relay: Some("mail.example.com:0".into()),
                    ..Default::default()
                },
                "smtpRelay",
                "mail.example.com:0",
            ),
            (
                ConfigChange {
                    smtp_from: Some("tandem".into()),
                    ..Default::default()
                },
                "smtpFrom",
                "tandem",
            ),
            (
                ConfigChange {
                    smtp_ca_file: Some("ca.pem".into()),
                    ..Default::default()
                },
                "smtpCaFile",
                "ca.pem",
            ),
        ] {
            let error = config.with(&change).unwrap_err();
            assert_eq!(error.problems.len(), 1, "{error}");
            let problem = &error.problems[0];
            assert_eq!((problem.field, problem.value.as_str()), (field, value));
        }
    }

    #[test]
    fn defaults_are_the_guides() {
        let config = HaConfig::default();
        assert!(!config.enabled);
        assert_eq!(config.heartbeat_interval, Span::from_secs(10));
        assert_eq!(config.heartbeat_failures, 3);
        assert_eq!(config.recheck_interval, Span::from_secs(5));
        assert_eq!(config.run_every, Span::from_minutes(60));
        assert_eq!(config.start_time, StartTime::MIDNIGHT);
        assert_eq!(config.on_failure, OnFailure::Promote);
        assert_eq!(config.validate().unwrap(), vec![]);
    }

    #[test]
    fn errors_name_the_field_the_value_and_the_fix() {
        let config = HaConfig::default();
        let error = config
            .with(&ConfigChange {
                heartbeat_failures: Some(0),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(error.fields(), ["heartbeatFailures"]);
        assert_eq!(error.problems[0].value, "0");
        assert!(error.problems[0].problem.contains("between 1 and 100"));

        let error = config
            .with(&ConfigChange {
                enabled: Some(true),
                mode: Some(Mode::Secondary),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(error.fields(), ["primary"]);
        assert!(error.problems[0].problem.contains("--primary"));

        let error = config
            .with(&ConfigChange {
                primary: Some("10.0.0.1:99999".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(error.to_string().contains("10.0.0.1:99999"), "{error}");

        let error = config
            .with(&ConfigChange {
                notify_email: Some(vec!["ops at example".into()]),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(error.fields(), ["notifyEmail"]);
    }

    #[test]
    fn run_every_under_an_hour_is_accepted_with_the_trade_off_explained() {
        let (config, warnings) = HaConfig::default()
            .with(&ConfigChange {
                run_every: Some(Span::from_minutes(15)),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(config.run_every, Span::from_minutes(15));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].field, "runEvery");
        assert!(warnings[0].message.contains("advised 1h"));
    }

    #[test]
    fn unknown_fields_in_an_api_body_are_refused() {
        let error = serde_json::from_str::<ConfigChange>(r#"{"heartbeatIntervall":"5s"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("heartbeatIntervall"), "{error}");
        let change: ConfigChange =
            serde_json::from_str(r#"{"runEvery":"2h","startTime":"13:00","onFailure":"standby"}"#)
                .unwrap();
        assert_eq!(change.run_every, Some(Span::from_minutes(120)));
        assert_eq!(change.on_failure, Some(OnFailure::Standby));
    }

    #[test]
    fn a_configuration_stored_before_addresses_were_typed_still_loads() {
        // What a Secondary saved before: the Primary as typed (no port), an http witness, and
        // no witness certificate fields.
        let stored = r#"{"enabled":true,"mode":"Secondary","nodeStatus":"Standby",
            "primary":"10.0.0.1","replication":"continuous","onStandbyLost":"continuous",
            "synchronousTimeout":"5s","lagBound":"5s","onBehind":"standby",
            "startTime":"00:00","runEvery":"1h","heartbeatInterval":"10s",
            "heartbeatFailures":3,"recheckInterval":"5s","onFailure":"promote",
            "witnesses":["http://10.0.0.9:9444/witness/primary"],"notifyEmail":[],
            "notifyOnSyncCompletion":false,"notifyOnFailure":true,"smtpRelay":null,
            "smtpSecurity":"starttls","smtpFrom":null,"smtpCaFile":null}"#;
        let config: HaConfig = serde_json::from_str(stored).unwrap();
        assert_eq!(config.primary_text().as_deref(), Some("10.0.0.1:22"));
        assert_eq!(
            config.witnesses[0].to_string(),
            "http://10.0.0.9:9444/witness/primary"
        );
        assert_eq!(config.witness_tls(), None);
        assert_eq!(config.validate().unwrap(), vec![]);
        // Saved again, it loads to the same configuration.
        let saved = serde_json::to_string(&config).unwrap();
        assert!(saved.contains(r#""primary":"10.0.0.1:22""#), "{saved}");
        assert_eq!(serde_json::from_str::<HaConfig>(&saved).unwrap(), config);
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_field_value_and_fix() {
        let error = HaConfig::default()
            .with(&ConfigChange {
                primary: Some("10.0.0.1:99999".into()),
                heartbeat_failures: Some(0),
                run_every: Some(Span::from_secs(1)),
                witnesses: Some(vec!["ftp://lb/witness".into()]),
                witness_pinned_sha256: Some(vec!["abcd".into()]),
                notify_email: Some(vec!["ops at example".into()]),
                smtp_relay: Some("mail example".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            error.fields(),
            [
                "primary",
                "witnesses",
                "witnessPinnedSha256",
                "runEvery",
                "heartbeatFailures",
                "notifyEmail",
                "smtpRelay"
            ],
            "{error}"
        );
        let text = error.to_string();
        assert!(text.starts_with("7 problems:"), "{text}");
        for shown in [
            "primary = 10.0.0.1:99999",
            "1 to 65535",
            "witnesses = ftp://lb/witness",
            "witnessPinnedSha256 = abcd",
            "notifyEmail = ops at example",
            "smtpRelay = mail example",
        ] {
            assert!(text.contains(shown), "{shown}: {text}");
        }
    }

    #[test]
    fn a_primary_that_does_not_parse_is_not_also_reported_missing() {
        let error = HaConfig::default()
            .with(&ConfigChange {
                enabled: Some(true),
                mode: Some(Mode::Secondary),
                primary: Some("primary host".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(error.fields(), ["primary"], "{error}");
        assert!(error.problems[0].problem.contains("spaces"), "{error}");
    }

    fn synchronous(change: ConfigChange) -> Result<HaConfig, ConfigError> {
        HaConfig::default()
            .with(&ConfigChange {
                replication: Some(ReplicationMode::Synchronous),
                ..change
            })
            .map(|(config, _)| config)
    }

    #[test]
    fn synchronous_with_the_continuous_fallback_and_promotion_needs_a_third_party() {
        let error = synchronous(ConfigChange::default()).unwrap_err();
        assert_eq!(error.fields(), ["onStandbyLost"], "{error}");
        let problem = &error.problems[0].problem;
        for part in [
            "acknowledges writes without its Standby",
            "--if-standby-lost block",
            "--on-failure standby",
            "--witness URL",
        ] {
            assert!(problem.contains(part), "{part}: {problem}");
        }
        // The safe alternatives are accepted.
        for safe in [
            ConfigChange {
                on_standby_lost: Some(OnStandbyLost::Block),
                ..Default::default()
            },
            ConfigChange {
                on_failure: Some(OnFailure::Standby),
                ..Default::default()
            },
            ConfigChange {
                witnesses: Some(vec!["http://10.0.0.9:9444/witness/primary".into()]),
                ..Default::default()
            },
        ] {
            synchronous(safe.clone()).unwrap_or_else(|error| panic!("{safe:?}: {error}"));
        }
        // Continuous replication has no fallback to guard.
        HaConfig::default()
            .with(&ConfigChange {
                replication: Some(ReplicationMode::Continuous),
                ..Default::default()
            })
            .unwrap();
    }

    #[test]
    fn https_witnesses_need_one_way_to_check_their_certificate() {
        let https = || Some(vec!["https://lb.example:9444/witness/primary".into()]);
        let error = HaConfig::default()
            .with(&ConfigChange {
                witnesses: https(),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(error.fields(), ["witnessTls"], "{error}");
        assert!(
            error.problems[0].problem.contains("--witness-pin"),
            "{error}"
        );
        let pin = "AB:".repeat(31) + "AB";
        let (config, _) = HaConfig::default()
            .with(&ConfigChange {
                witnesses: https(),
                witness_pinned_sha256: Some(vec![pin]),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            config.witness_tls(),
            Some(WitnessTls::Pinned(vec!["ab".repeat(32)]))
        );
        let error = config
            .with(&ConfigChange {
                witness_insecure: Some(true),
                witness_ca_file: Some("ca.pem".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(error.fields(), ["witnessCaFile", "witnessTls"], "{error}");
        let (config, _) = config
            .with(&ConfigChange {
                witness_pinned_sha256: Some(Vec::new()),
                witness_ca_file: Some("/etc/tandem/witness-ca.pem".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            config.witness_tls(),
            Some(WitnessTls::CaFile("/etc/tandem/witness-ca.pem".into()))
        );
    }

    #[test]
    fn witnesses_are_parsed_and_bounded() {
        let error = HaConfig::default()
            .with(&ConfigChange {
                witnesses: Some(vec![
                    "http://user@lb/witness".into(),
                    "http://lb/witness#x".into(),
                ]),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(error.fields(), ["witnesses", "witnesses"], "{error}");
        let many = vec!["http://lb/witness".to_owned(); WITNESSES_MAX + 1];
        let error = HaConfig::default()
            .with(&ConfigChange {
                witnesses: Some(many),
                ..Default::default()
            })
            .unwrap_err();
        assert!(error.to_string().contains("at most 8 witnesses"), "{error}");
    }
}
