//! System Manager portal pages (port 8443, System Manager local users). They are plain HTML
//! forms over the same JSON API the CLI's peers use (`/api/v1/ha/…`), so the portal can never
//! accept a value the API would refuse: Save and Apply sends the form to
//! `PUT /api/v1/ha/config`, and the page shows the API's answer (the error naming field, value
//! and fix, or the saved configuration's warnings) as it is.

use serde::Serialize;
use tandem_ha::config::HaConfig;
use tandem_ha::machine::Snapshot;

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A value as the API names it (`"continuous"`, `"Secondary"`, `"10s"`).
fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn select(name: &str, label: &str, current: &str, choices: &[(&str, &str)]) -> String {
    let options: String = choices
        .iter()
        .map(|(value, shown)| {
            let selected = if *value == current { " selected" } else { "" };
            format!("<option value=\"{value}\"{selected}>{shown}</option>")
        })
        .collect();
    format!("<label>{label} <select name=\"{name}\">{options}</select></label>")
}

fn text(name: &str, label: &str, value: &str, hint: &str) -> String {
    format!(
        "<label>{label} <input name=\"{name}\" value=\"{}\"> <small>{hint}</small></label>",
        escape(value)
    )
}

fn checkbox(name: &str, label: &str, checked: bool) -> String {
    let checked = if checked { " checked" } else { "" };
    format!("<label><input type=\"checkbox\" name=\"{name}\"{checked}> {label}</label>")
}

fn lines(name: &str, label: &str, values: &[String], hint: &str) -> String {
    format!(
        "<label>{label} <small>{hint}</small><br><textarea name=\"{name}\" rows=\"3\" \
         cols=\"60\">{}</textarea></label>",
        escape(&values.join("\n"))
    )
}

/// `GET /ha/config`: the HA Configuration window, every field of `tandem ha configure`.
pub fn ha_configuration(node_name: &str, snapshot: &Snapshot) -> String {
    let config: &HaConfig = &snapshot.config;
    let enabled = |value: bool| {
        if config.enabled == value {
            " checked"
        } else {
            ""
        }
    };
    let held = snapshot
        .promotion_held
        .as_ref()
        .map(|why| {
            format!(
                "<p class=\"error\" role=\"alert\">Automatic promotion held (If Behind at \
                 Failure): {}. If the Primary does not return, promote this node with <code>tandem \
                 failover mode primary</code>.</p>",
                escape(why)
            )
        })
        .unwrap_or_default();
    let fields = [
        "<fieldset><legend>High Availability</legend>".to_owned(),
        format!(
            "<label><input type=\"radio\" name=\"enabled\" value=\"true\"{}> Enable</label>\
             <label><input type=\"radio\" name=\"enabled\" value=\"false\"{}> Disable</label>",
            enabled(true),
            enabled(false)
        ),
        select(
            "mode",
            "Mode",
            &wire(&config.mode),
            &[("Primary", "Primary"), ("Secondary", "Secondary")],
        ),
        select(
            "nodeStatus",
            "Node Status (Secondary mode)",
            &wire(&config.node_status),
            &[("Standby", "Standby"), ("Active", "Active")],
        ),
        text(
            "primary",
            "Primary",
            &config.primary_text().unwrap_or_default(),
            "HOST[:PORT] of a Trusted Host; empty for a Primary",
        ),
        "</fieldset><fieldset><legend>Replication</legend>".to_owned(),
        select(
            "replication",
            "Replication",
            &wire(&config.replication),
            &[
                ("scheduled", "Scheduled (StartTime / Run Every)"),
                ("continuous", "Continuous (a stream; lag of milliseconds)"),
                (
                    "synchronous",
                    "Synchronous (a write is acknowledged once the Standby holds it)",
                ),
            ],
        ),
        text(
            "startTime",
            "StartTime (GMT)",
            &wire(&config.start_time),
            "HH:MM; scheduled replication",
        ),
        text(
            "runEvery",
            "Run Every",
            &wire(&config.run_every),
            "e.g. 60m, 2h; advised 60m or more",
        ),
        select(
            "onStandbyLost",
            "If Standby Lost (synchronous)",
            &wire(&config.on_standby_lost),
            &[
                (
                    "continuous",
                    "Continue without it after the timeout, with an alarm",
                ),
                ("block", "Block writes until a Standby confirms them"),
            ],
        ),
        text(
            "synchronousTimeout",
            "Synchronous Timeout",
            &wire(&config.synchronous_timeout),
            "e.g. 5s",
        ),
        text(
            "lagBound",
            "Lag Bound",
            &wire(&config.lag_bound),
            "a Standby behind by more reports itself behind",
        ),
        select(
            "onBehind",
            "If Behind at Failure",
            &wire(&config.on_behind),
            &[
                (
                    "standby",
                    "Hold the automatic promotion (an operator decides)",
                ),
                ("promote", "Promote anyway"),
            ],
        ),
        "</fieldset><fieldset><legend>Fail Over Controls</legend>".to_owned(),
        text(
            "heartbeatInterval",
            "Heartbeat Interval",
            &wire(&config.heartbeat_interval),
            "e.g. 10s",
        ),
        text(
            "heartbeatFailures",
            "Consecutive Heartbeat Failures",
            &config.heartbeat_failures.to_string(),
            "1 to 100",
        ),
        text(
            "recheckInterval",
            "Re-check Interval",
            &wire(&config.recheck_interval),
            "e.g. 5s",
        ),
        select(
            "onFailure",
            "If Failure Detected",
            &wire(&config.on_failure),
            &[
                ("promote", "Promote to Primary"),
                ("standby", "Keep in Standby"),
            ],
        ),
        lines(
            "witnesses",
            "Witnesses",
            &config
                .witnesses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            "one URL per line, e.g. http://10.0.0.9:9444/witness/primary",
        ),
        text(
            "witnessCaFile",
            "Witness CA file (https witnesses)",
            config.witness_ca_file.as_deref().unwrap_or_default(),
            "absolute path of a PEM file of the CA that signed the witnesses' certificates",
        ),
        lines(
            "witnessPinnedSha256",
            "Witness certificate SHA-256 (https witnesses)",
            &config.witness_pinned_sha256,
            "one fingerprint per line, instead of a CA file",
        ),
        checkbox(
            "witnessInsecure",
            "Accept any witness certificate (labs only)",
            config.witness_insecure,
        ),
        "</fieldset><fieldset><legend>Notification Settings</legend>".to_owned(),
        lines(
            "notifyEmail",
            "E-mail addresses",
            &config.notify_email,
            "one per line",
        ),
        checkbox(
            "notifyOnSyncCompletion",
            "Notify On: Sync Completion",
            config.notify_on_sync_completion,
        ),
        checkbox(
            "notifyOnFailure",
            "Notify On: Failure / this server becomes primary",
            config.notify_on_failure,
        ),
        text(
            "smtpRelay",
            "SMTP relay",
            config.smtp_relay.as_deref().unwrap_or_default(),
            "HOST[:PORT]; empty: notifications are only logged",
        ),
        select(
            "smtpSecurity",
            "SMTP security",
            &wire(&config.smtp_security),
            &[
                ("starttls", "STARTTLS"),
                ("tls", "TLS (SMTPS)"),
                ("none", "None (trusted network only)"),
            ],
        ),
        text(
            "smtpFrom",
            "Sender",
            config.smtp_from.as_deref().unwrap_or_default(),
            "empty: tandem@localhost",
        ),
        text(
            "smtpCaFile",
            "CA file",
            config.smtp_ca_file.as_deref().unwrap_or_default(),
            "absolute path of a PEM file; empty: public roots",
        ),
        "</fieldset>".to_owned(),
    ]
    .concat();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>HA Configuration — {name}</title><style>{STYLE}</style></head><body>\
         <p><a href=\"/\">System Manager</a></p><h1>HA Configuration</h1>\
         <p id=\"node-status\">Node {name}: {mode}, {state}, epoch {epoch}</p>{held}\
         <form id=\"ha-config\">{fields}<button type=\"submit\">Save and Apply</button></form>\
         <div id=\"result\" role=\"status\"></div><script>{SCRIPT}</script></body></html>",
        name = escape(node_name),
        mode = snapshot.status.mode,
        state = snapshot.status.state,
        epoch = snapshot.epoch,
    )
}

const STYLE: &str = "body{font-family:sans-serif;max-width:56rem;margin:1rem auto;padding:0 1rem}\
fieldset{margin:0 0 1rem}label{display:block;margin:.4rem 0}small{color:#555}\
.error{color:#a00}.warning{color:#850}.saved{color:#060}";

/// Save and Apply: the fields the operator changed since the page was loaded (or last saved),
/// as one change. Only those: a page left open must not put back values another operator (or
/// a failover: Node Status) changed meanwhile. A number field that is not a number is sent as
/// typed, so the API refuses it by name instead of the page dropping it.
const SCRIPT: &str = r#"
const form = document.getElementById('ha-config');
function fields() {
  const data = new FormData(form);
  const value = (name) => (data.get(name) || '').trim();
  const list = (name) => value(name).split('\n').map((line) => line.trim()).filter(Boolean);
  const count = value('heartbeatFailures');
  const body = {
    enabled: value('enabled') === 'true',
    mode: value('mode'),
    nodeStatus: value('nodeStatus'),
    primary: value('primary'),
    replication: value('replication'),
    startTime: value('startTime'),
    runEvery: value('runEvery'),
    onStandbyLost: value('onStandbyLost'),
    synchronousTimeout: value('synchronousTimeout'),
    lagBound: value('lagBound'),
    onBehind: value('onBehind'),
    heartbeatInterval: value('heartbeatInterval'),
    heartbeatFailures: /^[0-9]+$/.test(count) ? Number(count) : count,
    recheckInterval: value('recheckInterval'),
    onFailure: value('onFailure'),
    witnesses: list('witnesses'),
    witnessCaFile: value('witnessCaFile'),
    witnessPinnedSha256: list('witnessPinnedSha256'),
    witnessInsecure: data.get('witnessInsecure') === 'on',
    notifyEmail: list('notifyEmail'),
    notifyOnSyncCompletion: data.get('notifyOnSyncCompletion') === 'on',
    notifyOnFailure: data.get('notifyOnFailure') === 'on',
    smtpRelay: value('smtpRelay'),
    smtpSecurity: value('smtpSecurity'),
    smtpFrom: value('smtpFrom'),
    smtpCaFile: value('smtpCaFile'),
  };
  return body;
}
let loaded = fields();
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const current = fields();
  const body = {};
  for (const [name, value] of Object.entries(current)) {
    if (JSON.stringify(value) !== JSON.stringify(loaded[name])) {
      body[name] = value;
    }
  }
  const result = document.getElementById('result');
  if (Object.keys(body).length === 0) {
    result.className = 'saved';
    result.textContent = 'Nothing changed; nothing to save.';
    return;
  }
  result.className = '';
  result.textContent = 'Saving…';
  let answer;
  try {
    answer = await fetch('/api/v1/ha/config', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  } catch (error) {
    result.className = 'error';
    result.textContent = 'Not saved: the node did not answer (' + error + ')';
    return;
  }
  const json = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    result.className = 'error';
    result.setAttribute('role', 'alert');
    const problems = (json.error && json.error.fields) || [];
    if (problems.length > 0) {
      result.textContent = 'Not saved: ' + problems.length + (problems.length === 1 ? ' problem' : ' problems');
      const list = document.createElement('ul');
      for (const problem of problems) {
        const item = document.createElement('li');
        item.textContent = problem.field + ' = ' + problem.value + ': ' + problem.problem;
        list.appendChild(item);
      }
      result.appendChild(list);
    } else {
      result.textContent = 'Not saved: ' + ((json.error && json.error.message) || json.message || ('HTTP ' + answer.status));
    }
    return;
  }
  loaded = current;
  result.className = 'saved';
  result.textContent = 'Saved and applied: ' + Object.keys(body).join(', ') + '.';
  for (const warning of json.warnings || []) {
    const line = document.createElement('p');
    line.className = 'warning';
    line.textContent = 'Warning: ' + warning.field + ': ' + warning.message;
    result.appendChild(line);
  }
  const status = json.snapshot && json.snapshot.status;
  if (status) {
    document.getElementById('node-status').textContent =
      'Node ' + document.title.split(' — ')[1] + ': ' + status.mode + ', ' + status.state + ', epoch ' + json.snapshot.epoch;
  }
});
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_ha::config::{ConfigChange, OnStandbyLost, ReplicationMode};
    use tandem_ha::machine::{Controller, Durable};

    #[test]
    fn the_page_shows_the_stored_values_escaped_and_every_field_the_api_takes() {
        let (config, _) = HaConfig::default()
            .with(&ConfigChange {
                replication: Some(ReplicationMode::Synchronous),
                // Without a third party, synchronous needs a safe policy for a lost Standby.
                on_standby_lost: Some(OnStandbyLost::Block),
                smtp_ca_file: Some("/etc/ssl/a\"b<c>.pem".into()),
                ..Default::default()
            })
            .unwrap();
        let snapshot = Controller::new("id", Durable::new(config, 7)).snapshot();
        let page = ha_configuration("node<1>", &snapshot);
        assert!(page.contains("<option value=\"synchronous\" selected>"));
        assert!(page.contains("value=\"/etc/ssl/a&quot;b&lt;c&gt;.pem\""));
        assert!(page.contains("HA Configuration — node&lt;1&gt;"));
        // Every field of the API's change has its input on the page.
        let fields = serde_json::to_value(ConfigChange::default()).unwrap();
        for field in fields.as_object().unwrap().keys() {
            assert!(
                page.contains(&format!("name=\"{field}\"")),
                "{field} is missing from the page"
            );
        }
    }
}
