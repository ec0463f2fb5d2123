//! `GET /ha/trusted-hosts`: Manage Trusted Hosts (guide: Step 4, exchange SSH keys). This
//! node's Local Server SSH Key to copy onto the peer, the peers this node trusts, Add Trusted
//! Host, Remove, and Test Connection with its clock offset.
//!
//! Trusted Hosts are node-local (each node trusts its peers itself), so these forms work on a
//! Standby too. Every change goes through the control socket's operations, as `tandem ha
//! trusted-hosts …` does.

use super::Executor;
use crate::console::session::Flash;
use crate::console::time::Moment;
use crate::console::{Chrome, ConsoleForm, ConsoleSession, render, render_with, run_operation};
use crate::ha::HaHandle;
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::Value;
use tandem_repl::ops::{Event, Operation};
use tandem_store::StoreError;
use tandem_store::trust::Endpoint;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ha/trusted-hosts", get(show))
        .route("/ha/trusted-hosts/add", post(add))
        .route("/ha/trusted-hosts/remove", post(remove))
        .route("/ha/trusted-hosts/test", post(test))
}

#[derive(Template)]
#[template(path = "console/sm_trusted_hosts.html")]
struct TrustedHostsPage {
    chrome: Chrome,
    local_key: String,
    local_fingerprint: String,
    hosts: Vec<HostRow>,
    /// Why the list could not be read.
    hosts_error: Option<String>,
    add: AddForm,
    test: TestForm,
    /// The last Test Connection's result, shown at the top.
    result: Option<TestResult>,
}

/// One trusted host as listed.
struct HostRow {
    endpoint: String,
    key_type: String,
    fingerprint: String,
    added: Moment,
}

/// Add Trusted Host: what was typed, and the problem of each refused field.
#[derive(Default)]
struct AddForm {
    host: String,
    key: String,
    host_problem: Option<String>,
    key_problem: Option<String>,
}

/// Test Connection to a typed address.
#[derive(Default)]
struct TestForm {
    endpoint: String,
    problem: Option<String>,
}

/// What Test Connection found (`Operation::TestConnection`).
struct TestResult {
    endpoint: String,
    succeeded: bool,
    /// The peer's facts (succeeded) or the failure with its fix.
    facts: Vec<(&'static str, String)>,
    failure: Option<String>,
    /// The clocks differ by more than the HA controller warns about.
    clock_warning: Option<String>,
}

#[derive(Deserialize)]
struct AddFields {
    #[serde(default)]
    host: String,
    #[serde(default)]
    key: String,
}

#[derive(Deserialize)]
struct RemoveFields {
    endpoint: String,
    /// Set by the confirmation (the page's dialog, or the confirmation page without script).
    #[serde(default)]
    confirmed: Option<String>,
}

#[derive(Deserialize)]
struct TestFields {
    #[serde(default)]
    endpoint: String,
}

async fn show(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(executor): Extension<Executor>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    let page = page(&state, &ha, &executor, &session).await;
    render(&page)
}

/// The window with empty forms and the current list.
async fn page(
    state: &AppState,
    ha: &HaHandle,
    executor: &Executor,
    session: &ConsoleSession,
) -> TrustedHostsPage {
    let local_key = executor.replication.public_key_line();
    let local_fingerprint = tandem_crypto::TrustedKey::parse(&local_key)
        .map(|key| key.fingerprint)
        .unwrap_or_else(|error| format!("unknown ({error})"));
    let (hosts, hosts_error) = match list(executor).await {
        Ok(hosts) => (hosts, None),
        Err(error) => (Vec::new(), Some(error)),
    };
    TrustedHostsPage {
        chrome: Chrome::new(
            state,
            ha,
            session,
            "/ha/trusted-hosts",
            "Manage Trusted Hosts",
        ),
        local_key,
        local_fingerprint,
        hosts,
        hosts_error,
        add: AddForm::default(),
        test: TestForm::default(),
        result: None,
    }
}

/// A trusted host as `Operation::TrustedHostsList` answers it (the store's `TrustedHost`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedHost {
    host: String,
    port: u16,
    public_key: String,
    fingerprint: String,
    added_at: String,
}

/// The trusted hosts, through `Operation::TrustedHostsList` (`tandem ha trusted-hosts list`).
async fn list(executor: &Executor) -> Result<Vec<HostRow>, String> {
    let now = time::OffsetDateTime::now_utc();
    match run_operation(&**executor, Operation::TrustedHostsList).await {
        Event::Done { result } => {
            let hosts: Vec<ListedHost> = serde_json::from_value(result)
                .map_err(|error| format!("the list could not be read: {error}"))?;
            Ok(hosts.iter().map(|host| HostRow::of(host, now)).collect())
        }
        Event::Failed { message, .. } => Err(message),
        Event::Progress { .. } => Err("the list ended without a result".into()),
    }
}

impl HostRow {
    fn of(host: &ListedHost, now: time::OffsetDateTime) -> Self {
        // Rows were stored from a parsed address; shown as HOST:PORT with IPv6 in brackets.
        let endpoint = Endpoint::from_parts(&host.host, host.port)
            .map(|endpoint| endpoint.to_string())
            .unwrap_or_else(|_| format!("{}:{}", host.host, host.port));
        Self {
            endpoint,
            key_type: host
                .public_key
                .split_whitespace()
                .next()
                .unwrap_or("unknown")
                .to_owned(),
            fingerprint: host.fingerprint.clone(),
            added: Moment::stored(&host.added_at, now),
        }
    }
}

/// The problem of a field the store refused, as "problem (you entered “value”)".
fn field_problem(error: &StoreError, field: &str) -> Option<String> {
    let StoreError::Invalid(invalid) = error else {
        return None;
    };
    invalid
        .fields
        .iter()
        .find(|refused| refused.field == field)
        .map(|refused| {
            if refused.value.is_empty() {
                refused.problem.clone()
            } else if refused.problem.starts_with("is ") {
                // The address parser's problems read on from the value ("is not HOST[:PORT]…").
                format!("“{}” {}", refused.value, refused.problem)
            } else {
                format!("{} (you entered “{}”)", refused.problem, refused.value)
            }
        })
}

/// `POST /ha/trusted-hosts/add`: checks both fields with the parsers the operation uses, so
/// each problem is shown next to its field, then adds through `Operation::TrustedHostsAdd`.
async fn add(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(executor): Extension<Executor>,
    Extension(session): Extension<ConsoleSession>,
    ConsoleForm(fields): ConsoleForm<AddFields>,
) -> Response {
    let host = fields.host.trim().to_owned();
    let key = fields.key.trim().to_owned();
    let mut form = AddForm {
        host: host.clone(),
        key: key.clone(),
        ..AddForm::default()
    };
    if let Err(error) = Endpoint::parse(&host) {
        form.host_problem = field_problem(&StoreError::from(error), "host");
    }
    if let Err(error) = tandem_crypto::TrustedKey::parse(&key) {
        form.key_problem = Some(format!(
            "{error}. In the console, copy it from Local Server SSH Key on the peer's Manage \
             Trusted Hosts page."
        ));
    }
    if form.host_problem.is_none() && form.key_problem.is_none() {
        let operation = Operation::TrustedHostsAdd {
            endpoint: host,
            key,
        };
        match run_operation(&*executor, operation).await {
            Event::Done { result } => {
                let text = format!(
                    "Added trusted host {} with key {}. Compare this fingerprint with the Local \
                     Server SSH Key fingerprint on that node's Manage Trusted Hosts page.",
                    endpoint_of(&result),
                    result["fingerprint"].as_str().unwrap_or("(unknown)")
                );
                return session.redirect(&state, "/ha/trusted-hosts", Flash::success(text));
            }
            Event::Failed { message, .. } => form.host_problem = Some(message),
            Event::Progress { .. } => {}
        }
    }
    let mut page = page(&state, &ha, &executor, &session).await;
    page.add = form;
    render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

/// HOST:PORT of a `TrustedHost` answer.
fn endpoint_of(host: &Value) -> String {
    let name = host["host"].as_str().unwrap_or_default();
    let port = host["port"].as_u64().unwrap_or_default();
    u16::try_from(port)
        .ok()
        .and_then(|port| Endpoint::from_parts(name, port).ok())
        .map(|endpoint| endpoint.to_string())
        .unwrap_or_else(|| format!("{name}:{port}"))
}

/// `POST /ha/trusted-hosts/remove`: without `confirmed` (no script ran the dialog), asks on a
/// page of its own; with it, removes through `Operation::TrustedHostsRemove`.
async fn remove(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(executor): Extension<Executor>,
    Extension(session): Extension<ConsoleSession>,
    ConsoleForm(fields): ConsoleForm<RemoveFields>,
) -> Response {
    if fields.confirmed.as_deref() != Some("yes") {
        let fingerprint = list(&executor).await.ok().and_then(|hosts| {
            hosts
                .into_iter()
                .find(|host| host.endpoint == fields.endpoint)
                .map(|host| host.fingerprint)
        });
        let endpoint = fields.endpoint;
        let mut consequences: Vec<String> = fingerprint
            .map(|fingerprint| format!("Its key: {fingerprint}"))
            .into_iter()
            .collect();
        consequences.push(format!(
            "This node will no longer accept or open replication connections with {endpoint}: \
             heartbeats and syncs with it stop until its key is added again."
        ));
        return crate::console::confirm::Confirm {
            chrome: Chrome::new(
                &state,
                &ha,
                &session,
                "/ha/trusted-hosts",
                "Remove Trusted Host",
            ),
            question: format!("Remove trusted host {endpoint}?"),
            consequences,
            action: "/ha/trusted-hosts/remove".into(),
            button: format!("Remove {endpoint}"),
            fields: vec![("endpoint", endpoint)],
            cancel: "/ha/trusted-hosts".into(),
        }
        .page();
    }
    let operation = Operation::TrustedHostsRemove {
        endpoint: fields.endpoint.clone(),
    };
    let flash = match run_operation(&*executor, operation).await {
        Event::Done { .. } => Flash::success(format!(
            "Removed trusted host {}: this node no longer accepts or opens replication \
             connections with it.",
            fields.endpoint
        )),
        Event::Failed { message, .. } => Flash::error(format!(
            "Trusted host {} was not removed: {message}",
            fields.endpoint
        )),
        Event::Progress { .. } => Flash::error("the removal ended without a result"),
    };
    session.redirect(&state, "/ha/trusted-hosts", flash)
}

/// `POST /ha/trusted-hosts/test`: Test Connection to a trusted host (its row's button) or a
/// typed address; the page shows the result. Repeating it (a reload) only tests again.
async fn test(
    State(state): State<AppState>,
    Extension(ha): Extension<HaHandle>,
    Extension(executor): Extension<Executor>,
    Extension(session): Extension<ConsoleSession>,
    ConsoleForm(fields): ConsoleForm<TestFields>,
) -> Response {
    let typed = fields.endpoint.trim().to_owned();
    let mut page = page(&state, &ha, &executor, &session).await;
    if let Err(error) = Endpoint::parse(&typed) {
        page.test = TestForm {
            problem: field_problem(&StoreError::from(error), "host"),
            endpoint: typed,
        };
        return render_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let operation = Operation::TestConnection {
        endpoint: typed.clone(),
    };
    let event = run_operation(&*executor, operation).await;
    page.result = Some(TestResult::of(&typed, event, &ha));
    page.test.endpoint = typed;
    render(&page)
}

impl TestResult {
    fn of(endpoint: &str, event: Event, ha: &HaHandle) -> Self {
        let report = match event {
            Event::Done { result } => result,
            Event::Failed { message, .. } => return Self::failed(endpoint, message),
            Event::Progress { .. } => {
                return Self::failed(endpoint, "the test ended without a result".into());
            }
        };
        let peer = &report["peer"];
        let text = |value: &Value| match value {
            Value::String(text) => text.clone(),
            Value::Null => "unknown".into(),
            other => other.to_string(),
        };
        let offset_ms = report["clockOffsetMs"].as_i64().unwrap_or_default();
        // The peer's mode and state as this node's HA controller last heard them (a hello
        // carries neither); unknown while HA is not configured.
        let member = ha
            .snapshot()
            .cluster
            .into_iter()
            .find(|member| Some(member.node_id.as_str()) == peer["nodeId"].as_str());
        let mode_and_state = member
            .map(|member| format!("{} · {}", member.mode, member.state))
            .unwrap_or_else(|| {
                "not known yet: HA is not configured, or its controller has not reported to \
                 this node"
                    .into()
            });
        let facts = vec![
            ("Peer node", text(&peer["nodeName"])),
            ("Software version", text(&peer["softwareVersion"])),
            ("Schema version", text(&peer["schemaVersion"])),
            ("Mode · State", mode_and_state),
            ("Epoch", text(&peer["epoch"])),
            ("Round trip", format!("{} ms", text(&report["roundTripMs"]))),
            ("Clock offset", clock_offset(offset_ms)),
        ];
        let warn_ms = tandem_ha::machine::CLOCK_SKEW_WARN_MS;
        Self {
            endpoint: endpoint.to_owned(),
            succeeded: true,
            facts,
            failure: None,
            clock_warning: (offset_ms.abs() > warn_ms).then(|| {
                format!(
                    "The clocks differ by more than {warn_ms} ms: set both nodes to the same \
                     NTP servers, as the guide requires."
                )
            }),
        }
    }

    fn failed(endpoint: &str, message: String) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            succeeded: false,
            facts: Vec::new(),
            failure: Some(message),
            clock_warning: None,
        }
    }
}

/// "+12 ms (the peer's clock is ahead)".
fn clock_offset(offset_ms: i64) -> String {
    let side = match offset_ms {
        0 => return "0 ms (the clocks agree)".into(),
        ahead if ahead > 0 => "ahead of",
        _ => "behind",
    };
    format!("{offset_ms:+} ms (the peer's clock is {side} this node's)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_offset_reads_with_its_sign_and_side() {
        assert_eq!(clock_offset(0), "0 ms (the clocks agree)");
        assert!(clock_offset(12).starts_with("+12 ms") && clock_offset(12).contains("ahead"));
        assert!(clock_offset(-7).starts_with("-7 ms") && clock_offset(-7).contains("behind"));
    }

    #[test]
    fn a_refused_address_names_its_problem_and_the_value() {
        let error = StoreError::from(Endpoint::parse("host:99999").unwrap_err());
        let problem = field_problem(&error, "host").unwrap();
        assert!(problem.contains("host:99999"), "{problem}");
        assert_eq!(field_problem(&error, "key"), None);
    }
}
