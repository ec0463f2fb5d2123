//! The System Manager's HA windows: in a browser against real nodes (one node; a Primary and its
//! Secondary), and the form guards on the wire (a cross-site post, a post without the session's
//! form token), each checked against what the node holds afterwards.

use super::{browser_available, run_script};
use crate::support::node::{FAST, Links, Node, PASSWORD, start_pair};
use crate::support::smtp::SmtpServer;

#[test]
fn the_ha_windows_save_only_what_changed_refuse_bad_values_by_field_and_test_e_mail() {
    if !browser_available() {
        return;
    }
    // Test e-mail reaches a real SMTP server when aiosmtpd is here (guide Table 3, task 4); the
    // rest of the windows are tested either way.
    let smtp = SmtpServer::start();
    let mut node = Node::init("portal-node");
    node.serve();
    let mut env = vec![
        (
            "TANDEM_PORTAL_URL",
            format!("https://127.0.0.1:{}", node.sysmgr_port),
        ),
        ("TANDEM_PORTAL_PASSWORD", PASSWORD.to_owned()),
    ];
    if let Some(smtp) = &smtp {
        env.push(("TANDEM_SMTP_RELAY", smtp.relay()));
    }
    let seen = run_script("sm_ha_config.mjs", &env);

    // What the pages saved is what the node holds, beside the other operator's Run Every; the
    // refused saves and "Show fields for this mode" changed nothing else.
    let config = &node.status()["config"];
    assert_eq!(config["mode"], "Primary", "{config:#}");
    assert_eq!(config["replication"], "continuous", "{config:#}");
    assert_eq!(config["lagBound"], "3s", "{config:#}");
    assert_eq!(config["heartbeatInterval"], "2s", "{config:#}");
    assert_eq!(config["runEvery"], "2h", "{config:#}");
    assert_eq!(config["heartbeatFailures"], 3, "{config:#}");
    let refusal = seen["refused_lagBound"].as_str().unwrap_or_default();
    assert!(refusal.contains("10 parsecs"), "{refusal}");
    if let Some(smtp) = smtp {
        assert_eq!(config["notifyEmail"][0], "ops@example.com", "{config:#}");
        assert_eq!(config["smtpRelay"], smtp.relay(), "{config:#}");
        let mail = smtp.wait_for(&["ops@example.com", "test of the HA notification"]);
        assert!(mail.contains("portal-node"), "{mail}");
    } else {
        // The refused address list saved nothing.
        assert_eq!(config["notifyEmail"], serde_json::json!([]), "{config:#}");
    }
}

#[test]
fn a_primary_shows_its_secondary_in_ha_status_and_the_secondary_its_primary_in_node_status() {
    if !browser_available() {
        return;
    }
    let (mut a, mut b) = (Node::init("node-a"), Node::init("node-b"));
    let links = Links {
        primary_at: &a.endpoint(),
        secondary_at: &b.endpoint(),
    };
    start_pair(&mut a, &mut b, &links, FAST, FAST);
    // The Primary knows its Secondary once a heartbeat reached it.
    crate::support::node::wait_until(
        || format!("{:#}", a.status()),
        || {
            a.status()["controller"]["cluster"]
                .as_array()
                .is_some_and(|nodes| nodes.iter().any(|node| node["nodeName"] == "node-b"))
        },
    );
    let seen = run_script(
        "sm_ha_pair.mjs",
        &[
            (
                "TANDEM_PRIMARY_URL",
                format!("https://127.0.0.1:{}", a.sysmgr_port),
            ),
            (
                "TANDEM_SECONDARY_URL",
                format!("https://127.0.0.1:{}", b.sysmgr_port),
            ),
            ("TANDEM_PORTAL_PASSWORD", PASSWORD.to_owned()),
            ("TANDEM_PRIMARY_NAME", "node-a".to_owned()),
            ("TANDEM_SECONDARY_NAME", "node-b".to_owned()),
        ],
    );
    // What the pages showed is what the nodes say of themselves, and the refused promotion
    // left the Secondary a Standby.
    let secondary = b.status();
    assert_eq!(secondary["controller"]["peer"]["nodeName"], "node-a");
    assert_eq!(
        secondary["config"]["nodeStatus"], "Standby",
        "{secondary:#}"
    );
    assert_eq!(b.state(), "Standby");
    assert!(
        seen["oneActiveRefusal"]
            .as_str()
            .unwrap_or_default()
            .contains("node-a")
    );
    assert!(
        seen["nodeStatus"]
            .as_str()
            .unwrap_or_default()
            .contains(&a.endpoint())
    );
}

/// A browser of the tests' own: a client that keeps the answer's cookies and redirects to
/// itself, so the session cookie and the form token can be used by hand.
mod wire {
    use crate::support::node::PASSWORD;

    pub struct Answer {
        pub status: u16,
        pub headers: reqwest::header::HeaderMap,
        pub body: String,
    }

    fn send(request: reqwest::RequestBuilder) -> Answer {
        tandem_crypto::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let response = request.send().await.unwrap();
            Answer {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response.text().await.unwrap(),
            }
        })
    }

    fn client() -> reqwest::Client {
        tandem_crypto::install_crypto_provider();
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Logs in through the form; returns the session cookie (`name=value`).
    pub fn login(port: u16) -> String {
        let answer = post(
            port,
            "/login",
            None,
            &format!("https://127.0.0.1:{port}"),
            &[("user", "admin"), ("password", PASSWORD), ("next", "/")],
        );
        assert_eq!(answer.status, 303, "{}", answer.body);
        let cookie = answer.headers["set-cookie"].to_str().unwrap();
        cookie.split(';').next().unwrap().to_owned()
    }

    pub fn get(port: u16, path: &str, cookie: &str) -> Answer {
        send(
            client()
                .get(format!("https://127.0.0.1:{port}{path}"))
                .header("cookie", cookie),
        )
    }

    /// A form post as a browser sends it: urlencoded, with the page's Origin.
    pub fn post(
        port: u16,
        path: &str,
        cookie: Option<&str>,
        origin: &str,
        fields: &[(&str, &str)],
    ) -> Answer {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = client()
            .post(format!("https://127.0.0.1:{port}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", origin)
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        send(request)
    }

    /// `application/x-www-form-urlencoded` of one name or value.
    fn encode(text: &str) -> String {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (byte as char).to_string()
                }
                _ => format!("%{byte:02X}"),
            })
            .collect()
    }

    /// The form token a page carries.
    pub fn csrf(page: &str) -> String {
        let start = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
        page[start..].split('"').next().unwrap().to_owned()
    }
}

#[test]
fn a_cross_site_post_and_a_post_without_the_form_token_change_nothing() {
    let mut node = Node::init("portal-node");
    node.serve();
    let port = node.sysmgr_port;
    let cookie = wire::login(port);
    let page = wire::get(port, "/ha/config", &cookie);
    assert_eq!(page.status, 200, "{}", page.body);
    let token = wire::csrf(&page.body);
    let own = format!("https://127.0.0.1:{port}");
    let change = |token: &str| {
        vec![
            ("csrf", token.to_owned()),
            ("was_heartbeatInterval", "10s".to_owned()),
            ("heartbeatInterval", "2s".to_owned()),
            ("action", "save".to_owned()),
        ]
    };
    let post = |origin: &str, fields: Vec<(&str, String)>| {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        wire::post(port, "/ha/config", Some(&cookie), origin, &fields)
    };
    let interval = || node.status()["config"]["heartbeatInterval"].clone();

    // Another site's page posting the operator's form, token and all: refused before anything.
    let cross_site = post("https://evil.example", change(&token));
    assert_eq!(cross_site.status, 403, "{}", cross_site.body);
    assert_eq!(interval(), "10s");
    // From this console's own origin but without the session's token, or with another one.
    let stale = change(&"0".repeat(token.len()));
    for fields in [change(&token)[1..].to_vec(), stale] {
        let refused = post(&own, fields);
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(
            refused.body.contains("Nothing was changed"),
            "{}",
            refused.body
        );
        assert_eq!(interval(), "10s");
    }
    // The same form with the token, from the console itself, is carried out.
    let saved = post(&own, change(&token));
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(interval(), "2s");
}
