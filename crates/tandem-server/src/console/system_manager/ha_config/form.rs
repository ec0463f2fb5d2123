//! The HA form: its fields in the guide's order, what the operator changed, Save and Apply.

use crate::console::ConsoleSession;
use crate::console::time::{relative_ms as relative, utc_ms as utc_time};
use crate::ha::{ConfigureError, Configured, HaHandle};
use crate::state::{AppState, ConnectionInfo};
use axum::Extension;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use std::collections::HashMap;
use tandem_ha::Mode;
use tandem_ha::config::{ConfigChange, HaConfig, ReplicationMode};
use tandem_ha::machine::Snapshot;

/// How a field is typed in, and how its text becomes the API's JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::console::system_manager) enum Input {
    Text,
    /// A whole number (sent as a JSON number when it is one, refused by name when not).
    Count,
    /// One value per line (a JSON list).
    Lines,
    /// A checkbox (a JSON boolean; absent from the post when unchecked).
    Check,
    /// Enable / Disable (a JSON boolean).
    Switch,
    Choice(&'static [(&'static str, &'static str)]),
}

/// The Mode and replication under which a field means something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::console::system_manager) enum Applies {
    Always,
    Secondary,
    Scheduled,
    Synchronous,
    /// Continuous or synchronous replication.
    Streaming,
    /// A Secondary replicating continuously or synchronously.
    StreamingSecondary,
    /// Consulted before a Secondary promotes, and by a synchronous Primary before it goes on
    /// without its Standby.
    Witnesses,
}

impl Applies {
    pub(in crate::console::system_manager) fn under(
        self,
        mode: Mode,
        replication: ReplicationMode,
    ) -> bool {
        let secondary = mode == Mode::Secondary;
        let synchronous = replication == ReplicationMode::Synchronous;
        let streaming = replication != ReplicationMode::Scheduled;
        match self {
            Applies::Always => true,
            Applies::Secondary => secondary,
            Applies::Scheduled => !streaming,
            Applies::Synchronous => synchronous,
            Applies::Streaming => streaming,
            Applies::StreamingSecondary => streaming && secondary,
            Applies::Witnesses => secondary || synchronous,
        }
    }

    /// Every `Mode/replication` it applies under, for the page's script (`data-applies`), so
    /// the rule lives here only.
    fn combinations(self) -> String {
        let mut all = Vec::new();
        for mode in [Mode::Primary, Mode::Secondary] {
            for replication in [
                ReplicationMode::Scheduled,
                ReplicationMode::Continuous,
                ReplicationMode::Synchronous,
            ] {
                if self.under(mode, replication) {
                    all.push(format!("{mode}/{replication}"));
                }
            }
        }
        all.join(" ")
    }
}

/// One field of the HA configuration as a form shows it; `name` is the API's.
pub(in crate::console::system_manager) struct FieldSpec {
    pub name: &'static str,
    pub label: &'static str,
    pub hint: &'static str,
    pub input: Input,
    pub applies: Applies,
}

/// A fieldset of the form.
pub(in crate::console::system_manager) struct GroupSpec {
    pub legend: &'static str,
    pub fields: &'static [FieldSpec],
}

const ENABLE: &[(&str, &str)] = &[("true", "Enable"), ("false", "Disable")];

/// The HA Configuration window, in the guide's order. The notification fields are on
/// Notification Settings (`notifications.rs`).
pub(in crate::console::system_manager) const HA_GROUPS: &[GroupSpec] = &[
    GroupSpec {
        legend: "High Availability",
        fields: &[
            FieldSpec {
                name: "enabled",
                label: "High Availability",
                hint: "Enable to pair this node with another; disabled, it serves alone as a \
                       standalone Primary.",
                input: Input::Switch,
                applies: Applies::Always,
            },
            FieldSpec {
                name: "mode",
                label: "Mode",
                hint: "Primary serves the fleet; a Secondary heartbeats and copies its Primary.",
                input: Input::Choice(&[("Primary", "Primary"), ("Secondary", "Secondary")]),
                applies: Applies::Always,
            },
            FieldSpec {
                name: "nodeStatus",
                label: "Node Status",
                hint: "Standby follows the Primary; Active makes this Secondary serve (a failover \
                       sets it too).",
                input: Input::Choice(&[("Standby", "Standby"), ("Active", "Active")]),
                applies: Applies::Secondary,
            },
            FieldSpec {
                name: "primary",
                label: "Primary",
                hint: "HOST[:PORT] of the Primary's replication listener; it must be a Trusted \
                       Host (port 22 when omitted).",
                input: Input::Text,
                applies: Applies::Secondary,
            },
        ],
    },
    GroupSpec {
        legend: "Replication",
        fields: &[
            FieldSpec {
                name: "replication",
                label: "Replication",
                hint: "Scheduled copies on StartTime / Run Every; continuous streams each write \
                       as it commits; synchronous acknowledges a write once the Standby holds it.",
                input: Input::Choice(&[
                    ("scheduled", "Scheduled (StartTime / Run Every)"),
                    ("continuous", "Continuous (a stream; lag of milliseconds)"),
                    ("synchronous", "Synchronous (no acknowledged write lost)"),
                ]),
                applies: Applies::Always,
            },
            FieldSpec {
                name: "startTime",
                label: "StartTime (GMT)",
                hint: "HH:MM in GMT. Saving re-anchors the schedule at the next StartTime.",
                input: Input::Text,
                applies: Applies::Scheduled,
            },
            FieldSpec {
                name: "runEvery",
                label: "Run Every",
                hint: "Minutes, hours or days, e.g. 60m, 2h, 1d; the guide advises 60m or more.",
                input: Input::Text,
                applies: Applies::Scheduled,
            },
            FieldSpec {
                name: "onStandbyLost",
                label: "If Standby Lost",
                hint: "What the Primary does when its Standby stops confirming writes.",
                input: Input::Choice(&[
                    (
                        "continuous",
                        "Continue without it after the timeout, with an alarm",
                    ),
                    ("block", "Block writes until a Standby confirms them"),
                ]),
                applies: Applies::Synchronous,
            },
            FieldSpec {
                name: "synchronousTimeout",
                label: "Synchronous Timeout",
                hint: "How long a write waits for the Standby before the Primary goes on \
                       without it, e.g. 5s.",
                input: Input::Text,
                applies: Applies::Synchronous,
            },
            FieldSpec {
                name: "lagBound",
                label: "Lag Bound",
                hint: "A Standby further behind than this reports itself behind, e.g. 5s.",
                input: Input::Text,
                applies: Applies::Streaming,
            },
            FieldSpec {
                name: "onBehind",
                label: "If Behind at Failure",
                hint: "When the Primary fails while this Standby may lack acknowledged writes.",
                input: Input::Choice(&[
                    (
                        "standby",
                        "Hold the automatic promotion (an operator decides)",
                    ),
                    ("promote", "Promote anyway"),
                ]),
                applies: Applies::StreamingSecondary,
            },
        ],
    },
    GroupSpec {
        legend: "Fail Over Controls",
        fields: &[
            FieldSpec {
                name: "heartbeatInterval",
                label: "Heartbeat Interval",
                hint: "How often a Secondary heartbeats its Primary, and every node checks its \
                       Trusted Hosts, e.g. 10s.",
                input: Input::Text,
                applies: Applies::Always,
            },
            FieldSpec {
                name: "heartbeatFailures",
                label: "Consecutive Heartbeat Failures",
                hint: "Failures in a row before failover is detected: 1 to 100.",
                input: Input::Count,
                applies: Applies::Secondary,
            },
            FieldSpec {
                name: "recheckInterval",
                label: "Re-check Interval",
                hint: "The wait before the next heartbeat after one failed, e.g. 5s.",
                input: Input::Text,
                applies: Applies::Secondary,
            },
            FieldSpec {
                name: "onFailure",
                label: "If Failure Detected",
                hint: "Promote to Primary takes over; Keep in Standby only notifies.",
                input: Input::Choice(&[
                    ("promote", "Promote to Primary"),
                    ("standby", "Keep in Standby"),
                ]),
                applies: Applies::Secondary,
            },
        ],
    },
    GroupSpec {
        legend: "Witnesses",
        fields: &[
            FieldSpec {
                name: "witnesses",
                label: "Witnesses",
                hint: "One URL per line, e.g. http://10.0.0.9:9444/witness/primary; empty: \
                       promote on heartbeat failures alone, as the guide does.",
                input: Input::Lines,
                applies: Applies::Witnesses,
            },
            FieldSpec {
                name: "witnessCaFile",
                label: "Witness CA file",
                hint: "https witnesses: absolute path of a PEM file of the CA that signed their \
                       certificates.",
                input: Input::Text,
                applies: Applies::Witnesses,
            },
            FieldSpec {
                name: "witnessPinnedSha256",
                label: "Witness certificate SHA-256",
                hint: "https witnesses: one fingerprint per line, instead of a CA file.",
                input: Input::Lines,
                applies: Applies::Witnesses,
            },
            FieldSpec {
                name: "witnessInsecure",
                label: "Accept any witness certificate",
                hint: "Labs only: a witness's certificate is not checked.",
                input: Input::Check,
                applies: Applies::Witnesses,
            },
        ],
    },
];

/// One refused value: the field, what was given, and the problem with its fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::console::system_manager) struct Problem {
    pub field: String,
    pub value: String,
    pub problem: String,
}

impl Problem {
    /// The value and the problem, the value once (the decoder's words often quote it).
    pub(in crate::console::system_manager) fn text(&self) -> String {
        if self.value.is_empty() || self.problem.contains(&self.value) {
            self.problem.clone()
        } else {
            format!("“{}”: {}", self.value, self.problem)
        }
    }
}

/// A field's stored value as the form shows it (the API's wire text; lists one per line).
fn wire_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Every field of the stored configuration as text, by API name.
pub(in crate::console::system_manager) fn loaded_values(
    config: &HaConfig,
) -> HashMap<String, String> {
    match serde_json::to_value(config) {
        Ok(Value::Object(fields)) => fields
            .iter()
            .map(|(name, value)| (name.clone(), wire_text(Some(value))))
            .collect(),
        // A struct of plain fields always serializes as an object.
        _ => HashMap::new(),
    }
}

/// The lines of a list field, trimmed, without empty ones.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A field's text compared as the API would read it (a list's line endings and blank lines,
/// a text's surrounding spaces do not count as a change).
fn normalized(input: Input, text: &str) -> String {
    match input {
        Input::Lines => lines(text).join("\n"),
        _ => text.trim().to_owned(),
    }
}

/// What the operator posted for `spec`: `None` when the form did not carry the field (its
/// `was_` value is missing), so it cannot have been changed.
fn posted(spec: &FieldSpec, form: &HashMap<String, String>) -> Option<(String, String)> {
    let was = form.get(&format!("was_{}", spec.name))?;
    let now = match (form.get(spec.name), spec.input) {
        (Some(value), Input::Check) => (value == "true" || value == "on").to_string(),
        (Some(value), _) => value.clone(),
        // An unchecked box is not posted at all.
        (None, Input::Check) => "false".to_owned(),
        (None, _) => return None,
    };
    Some((now, was.clone()))
}

/// The API's JSON value of a field's text.
fn json_value(spec: &FieldSpec, text: &str) -> Value {
    match spec.input {
        Input::Lines => Value::Array(lines(text).into_iter().map(Value::String).collect()),
        Input::Check | Input::Switch => Value::Bool(text.trim() == "true"),
        Input::Count => match text.trim().parse::<u64>() {
            Ok(count) => Value::from(count),
            Err(_) => Value::String(text.trim().to_owned()),
        },
        Input::Text | Input::Choice(_) => Value::String(text.trim().to_owned()),
    }
}

/// The change the operator made: the fields whose posted value differs from the value they
/// were loaded with, each decoded by the API's own [`ConfigChange`] (a value that does not
/// decode is a problem naming the field, and is left out).
pub(in crate::console::system_manager) struct Edit {
    pub change: ConfigChange,
    /// The labels of the changed fields that decoded, in the form's order.
    pub changed: Vec<&'static str>,
    pub problems: Vec<Problem>,
}

pub(in crate::console::system_manager) fn edit(
    groups: &[GroupSpec],
    form: &HashMap<String, String>,
) -> Edit {
    let mut fields = Map::new();
    let mut changed = Vec::new();
    let mut problems = Vec::new();
    for spec in groups.iter().flat_map(|group| group.fields) {
        let Some((now, was)) = posted(spec, form) else {
            continue;
        };
        if normalized(spec.input, &now) == normalized(spec.input, &was) {
            continue;
        }
        let value = json_value(spec, &now);
        let alone = Map::from_iter([(spec.name.to_owned(), value.clone())]);
        match serde_json::from_value::<ConfigChange>(Value::Object(alone)) {
            Ok(_) => {
                fields.insert(spec.name.to_owned(), value);
                changed.push(spec.label);
            }
            Err(error) => problems.push(Problem {
                field: spec.name.to_owned(),
                value: now.trim().to_owned(),
                problem: decode_problem(spec, &error.to_string()),
            }),
        }
    }
    // Each field decoded alone, so together they decode too.
    let change = serde_json::from_value(Value::Object(fields)).unwrap_or_default();
    Edit {
        change,
        changed,
        problems,
    }
}

/// The decoder's words for a value that is not of its field's type, with the fix.
fn decode_problem(spec: &FieldSpec, error: &str) -> String {
    match spec.input {
        Input::Count => "not a whole number; write digits only, e.g. 3".to_owned(),
        Input::Choice(choices) => format!(
            "not one of the choices ({}); pick one from the list",
            choices
                .iter()
                .map(|(value, _)| *value)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => error.to_owned(),
    }
}

/// What Save and Apply came to.
pub(in crate::console::system_manager) enum Saved {
    /// No field differs from what was loaded.
    Nothing,
    Applied {
        changed: Vec<&'static str>,
        configured: Box<Configured>,
    },
    Refused {
        status: StatusCode,
        problems: Vec<Problem>,
        /// The "one Active node" refusal (409): its reason, which `force` overrides.
        refusal: Option<String>,
        /// Not a field's fault (the controller stopped).
        failure: Option<String>,
    },
}

/// Who saves, for the log line every change leaves.
pub(in crate::console::system_manager) struct Operator<'a> {
    pub user: &'a str,
    pub source: String,
}

impl<'a> Operator<'a> {
    pub(in crate::console::system_manager) fn of(
        session: &'a ConsoleSession,
        connection: Option<Extension<ConnectionInfo>>,
    ) -> Self {
        Self {
            user: session.user(),
            source: connection
                .map(|Extension(info)| info.remote.to_string())
                .unwrap_or_default(),
        }
    }
}

/// Save and Apply of the fields of `groups` the operator changed.
pub(in crate::console::system_manager) async fn save_and_apply(
    state: &AppState,
    ha: &HaHandle,
    operator: &Operator<'_>,
    groups: &[GroupSpec],
    form: &HashMap<String, String>,
) -> Saved {
    let mut edit = edit(groups, form);
    edit.change.force = form.get("force").is_some_and(|value| value == "true");
    if !edit.problems.is_empty() {
        // Report every problem at once: what the rest of the change would meet as well.
        if let Err(error) = ha.snapshot().config.with(&edit.change) {
            for problem in error.problems {
                if !edit.problems.iter().any(|seen| seen.field == problem.field) {
                    edit.problems.push(from_field_error(problem));
                }
            }
        }
        return refused(StatusCode::UNPROCESSABLE_ENTITY, edit.problems, None);
    }
    if edit.changed.is_empty() {
        return Saved::Nothing;
    }
    match crate::sysmgr::configure_as(state, ha, operator.user, &operator.source, edit.change).await
    {
        Ok(configured) => Saved::Applied {
            changed: edit.changed,
            configured: Box::new(configured),
        },
        Err(error) => configure_refusal(error),
    }
}

fn refused(status: StatusCode, problems: Vec<Problem>, refusal: Option<String>) -> Saved {
    Saved::Refused {
        status,
        problems,
        refusal,
        failure: None,
    }
}

fn from_field_error(problem: tandem_ha::config::FieldError) -> Problem {
    Problem {
        field: problem.field.to_owned(),
        value: problem.value,
        problem: problem.problem,
    }
}

/// A refused Save and Apply as the API answers it: 422 with every problem, or 409 for a valid
/// change refused to keep one Active node.
fn configure_refusal(error: ConfigureError) -> Saved {
    let is_refusal = error.is_refusal();
    match error {
        ConfigureError::Invalid(invalid) => {
            let problems: Vec<Problem> =
                invalid.problems.into_iter().map(from_field_error).collect();
            if is_refusal {
                let reason = problems
                    .iter()
                    .map(|problem| problem.problem.trim_start_matches("refused: ").to_owned())
                    .collect::<Vec<_>>()
                    .join(" ");
                refused(StatusCode::CONFLICT, problems, Some(reason))
            } else {
                refused(StatusCode::UNPROCESSABLE_ENTITY, problems, None)
            }
        }
        ConfigureError::Stopped => Saved::Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            problems: Vec::new(),
            refusal: None,
            failure: Some(format!(
                "Not saved: {}. Nothing was changed; restart the node (`tandem serve`).",
                ConfigureError::Stopped
            )),
        },
    }
}

/// The success message of Save and Apply: what was saved, the warnings, and what changed in
/// consequence (the node's role and state, the next scheduled sync). Only the warnings about
/// `groups`' fields are repeated: the others stand whatever this page saves, and their own
/// window shows them when saved there.
pub(in crate::console::system_manager) fn saved_message(
    (changed, groups): (&[&str], &[GroupSpec]),
    configured: &Configured,
    before: &Snapshot,
    now_ms: i64,
) -> String {
    let mut text = format!("Saved and applied: {}.", changed.join(", "));
    let on_page = |field: &str| {
        groups
            .iter()
            .flat_map(|group| group.fields)
            .any(|spec| spec.name == field)
    };
    for warning in configured.warnings.iter().filter(|w| on_page(&w.field)) {
        let end = if warning.message.ends_with('.') {
            ""
        } else {
            "."
        };
        text.push_str(&format!(
            " Warning ({}): {}{end}",
            warning.field, warning.message
        ));
    }
    let after = &configured.snapshot;
    if after.status != before.status || after.epoch != before.epoch {
        text.push_str(&format!(
            " This node is now {}, {}{} (epoch {}).",
            after.status.mode,
            after.status.state,
            if after.status.ha_enabled {
                ""
            } else {
                ", HA disabled"
            },
            after.epoch
        ));
    }
    if let Some(next) = after.next_sync_ms {
        text.push_str(&format!(
            " Next scheduled sync: {} ({}).",
            utc_time(next),
            relative(next, now_ms)
        ));
    } else if before.next_sync_ms.is_some() {
        text.push_str(" No sync is scheduled any more.");
    }
    text
}

/// A field as the page shows it.
pub(in crate::console::system_manager) struct FieldView {
    pub name: &'static str,
    pub label: &'static str,
    pub hint: &'static str,
    /// `text`, `count`, `lines`, `check` or `choice`.
    pub kind: &'static str,
    pub options: Vec<(&'static str, &'static str, bool)>,
    pub value: String,
    pub was: String,
    pub applies: String,
    pub shown: bool,
    pub problem: Option<String>,
}

impl FieldView {
    pub fn described_by(&self) -> String {
        let mut ids = format!("f-{}-hint", self.name);
        if self.problem.is_some() {
            ids.push_str(&format!(" f-{}-problem", self.name));
        }
        ids
    }

    pub fn checked(&self) -> bool {
        self.value == "true"
    }
}

pub(in crate::console::system_manager) struct GroupView {
    pub legend: &'static str,
    pub fields: Vec<FieldView>,
    pub shown: bool,
}

/// The form's fields: the posted text where the operator typed it (a refused or re-shown
/// form), the stored value otherwise; each with its loaded value and its problem.
pub(in crate::console::system_manager) fn field_views(
    groups: &[GroupSpec],
    stored: &HashMap<String, String>,
    form: Option<&HashMap<String, String>>,
    problems: &[Problem],
) -> Vec<GroupView> {
    let pick = |name: &str| {
        form.and_then(|form| form.get(name))
            .or_else(|| stored.get(name))
            .cloned()
            .unwrap_or_default()
    };
    let mode = match pick("mode").as_str() {
        "Secondary" => Mode::Secondary,
        _ => Mode::Primary,
    };
    let replication = match pick("replication").as_str() {
        "continuous" => ReplicationMode::Continuous,
        "synchronous" => ReplicationMode::Synchronous,
        _ => ReplicationMode::Scheduled,
    };
    groups
        .iter()
        .map(|group| {
            let fields: Vec<FieldView> = group
                .fields
                .iter()
                .map(|spec| field_view(spec, stored, form, problems, (mode, replication)))
                .collect();
            GroupView {
                legend: group.legend,
                shown: fields.iter().any(|field| field.shown),
                fields,
            }
        })
        .collect()
}

fn field_view(
    spec: &'static FieldSpec,
    stored: &HashMap<String, String>,
    form: Option<&HashMap<String, String>>,
    problems: &[Problem],
    (mode, replication): (Mode, ReplicationMode),
) -> FieldView {
    let stored_value = stored.get(spec.name).cloned().unwrap_or_default();
    let (value, was) = match form.and_then(|form| posted(spec, form)) {
        Some((now, was)) => (now, was),
        None => (stored_value.clone(), stored_value),
    };
    let problem = problems
        .iter()
        .filter(|problem| problem.field == spec.name)
        .map(Problem::text)
        .reduce(|a, b| format!("{a} {b}"));
    let (kind, choices): (&str, &[(&str, &str)]) = match spec.input {
        Input::Text => ("text", &[]),
        Input::Count => ("count", &[]),
        Input::Lines => ("lines", &[]),
        Input::Check => ("check", &[]),
        Input::Switch => ("choice", ENABLE),
        Input::Choice(choices) => ("choice", choices),
    };
    FieldView {
        name: spec.name,
        label: spec.label,
        hint: spec.hint,
        kind,
        options: choices
            .iter()
            .map(|(option, words)| (*option, *words, *option == value.trim()))
            .collect(),
        applies: spec.applies.combinations(),
        // A refused field is shown whatever the Mode, so its problem is never hidden.
        shown: spec.applies.under(mode, replication) || problem.is_some(),
        value,
        was,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn only_the_fields_changed_since_loading_are_sent() {
        let posted = form(&[
            ("runEvery", "60m"),
            ("was_runEvery", "60m"),
            ("lagBound", "2s"),
            ("was_lagBound", "5s"),
            ("witnesses", "http://w:1/witness/primary\r\n\r\n"),
            ("was_witnesses", "http://w:1/witness/primary"),
            // Unchecked: absent from the post, but loaded as checked.
            ("was_witnessInsecure", "true"),
            // No `was_`: not on the posted form, so not changed.
            ("heartbeatFailures", "9"),
        ]);
        let edit = edit(HA_GROUPS, &posted);
        assert!(edit.problems.is_empty(), "{:?}", edit.problems);
        assert_eq!(
            edit.changed,
            ["Lag Bound", "Accept any witness certificate"]
        );
        assert_eq!(
            edit.change,
            ConfigChange {
                lag_bound: Some(tandem_ha::config::Span::from_secs(2)),
                witness_insecure: Some(false),
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_value_that_does_not_decode_is_refused_by_name_with_the_value_and_the_fix() {
        let posted = form(&[
            ("runEvery", "10 parsecs"),
            ("was_runEvery", "60m"),
            ("heartbeatFailures", "three"),
            ("was_heartbeatFailures", "3"),
            ("recheckInterval", "2s"),
            ("was_recheckInterval", "5s"),
        ]);
        let edit = edit(HA_GROUPS, &posted);
        let fields: Vec<_> = edit.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["runEvery", "heartbeatFailures"]);
        assert_eq!(edit.problems[0].value, "10 parsecs");
        assert!(edit.problems[0].problem.contains("e.g. `10s`"));
        assert!(
            edit.problems[1]
                .text()
                .contains("“three”: not a whole number")
        );
        // The decoder already quotes the value: it is not repeated.
        assert!(
            edit.problems[0]
                .text()
                .starts_with("`10 parsecs` is not a duration")
        );
        // The rest still decodes, so every other problem can be reported too.
        assert_eq!(edit.changed, ["Re-check Interval"]);
    }

    #[test]
    fn fields_show_only_under_the_mode_and_replication_they_apply_to() {
        let stored = loaded_values(&HaConfig::default());
        let shown = |form: Option<&HashMap<String, String>>, problems: &[Problem]| {
            field_views(HA_GROUPS, &stored, form, problems)
                .into_iter()
                .flat_map(|group| group.fields)
                .filter(|field| field.shown)
                .map(|field| field.name)
                .collect::<Vec<_>>()
        };
        // A new node: a scheduled Primary.
        let primary = shown(None, &[]);
        assert!(primary.contains(&"runEvery") && primary.contains(&"heartbeatInterval"));
        for absent in [
            "nodeStatus",
            "primary",
            "onFailure",
            "lagBound",
            "witnesses",
        ] {
            assert!(!primary.contains(&absent), "{absent} on a Primary");
        }
        let secondary = form(&[("mode", "Secondary"), ("replication", "synchronous")]);
        let secondary = shown(Some(&secondary), &[]);
        for present in [
            "primary",
            "onFailure",
            "onStandbyLost",
            "lagBound",
            "onBehind",
        ] {
            assert!(
                secondary.contains(&present),
                "{present} on a synchronous Secondary"
            );
        }
        assert!(!secondary.contains(&"runEvery"));
        // A refused field stays in sight whatever the Mode.
        let problem = Problem {
            field: "primary".into(),
            value: "x y".into(),
            problem: "bad".into(),
        };
        assert!(shown(None, &[problem]).contains(&"primary"));
        assert_eq!(
            Applies::StreamingSecondary.combinations(),
            "Secondary/continuous Secondary/synchronous"
        );
    }

    #[test]
    fn the_saved_message_names_the_fields_this_pages_warnings_and_the_consequences() {
        use tandem_ha::config::ConfigWarning;
        use tandem_ha::machine::{Controller, Durable};
        let before = Controller::new("id", Durable::new(HaConfig::default(), 7)).snapshot();
        let mut after = before.clone();
        after.status.mode = Mode::Secondary;
        after.status.state = tandem_ha::State::Standby;
        after.status.ha_enabled = true;
        let now = 1_000_000_000_000;
        after.next_sync_ms = Some(now + 30 * 60_000);
        let warning = |field: &str| ConfigWarning {
            field: field.into(),
            message: format!("{field} is unwise"),
        };
        let configured = Configured {
            warnings: vec![warning("runEvery"), warning("smtpRelay")],
            snapshot: after,
        };
        let text = saved_message(
            (&["Mode", "Run Every"], HA_GROUPS),
            &configured,
            &before,
            now,
        );
        assert_eq!(
            text,
            "Saved and applied: Mode, Run Every. Warning (runEvery): runEvery is unwise. This \
             node is now Secondary, Standby (epoch 7). Next scheduled sync: 2001-09-09 02:16:40 \
             UTC (in 30 min)."
        );
    }
}
