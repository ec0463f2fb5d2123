//! The consoles' login sessions (issue 17), against a real node: the session cookie's flags,
//! logout, the form token and the Origin check on every form, a password change ending the
//! user's sessions, the back-off shared with HTTP Basic, and no redirect to another site.

use crate::support::node::{Call, Node, PASSWORD};
use reqwest::Method;
use serde_json::json;

/// A browser's form post to a console on `port`: urlencoded, from the console's own origin
/// unless `origin` says otherwise, with the session cookie when given.
fn form(port: u16, path: &str, fields: &[(&str, &str)], cookie: Option<&str>) -> Call {
    form_from(
        port,
        path,
        fields,
        cookie,
        &format!("https://127.0.0.1:{port}"),
    )
}

fn form_from(
    port: u16,
    path: &str,
    fields: &[(&str, &str)],
    cookie: Option<&str>,
    origin: &str,
) -> Call {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut headers = vec![
        (
            "content-type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("origin", origin.to_owned()),
    ];
    if let Some(cookie) = cookie {
        headers.push(("cookie", cookie.to_owned()));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    Call::new(port, Method::POST, path)
        .user(None)
        .headers(&headers)
        .raw(body)
}

fn page(port: u16, path: &str, cookie: &str) -> crate::support::node::Reply {
    Call::new(port, Method::GET, path)
        .user(None)
        .headers(&[("cookie", cookie)])
        .send()
        .unwrap()
}

fn header(reply: &crate::support::node::Reply, name: &str) -> String {
    reply
        .headers
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Logs in through the form; returns the `name=value` cookie and its Set-Cookie line.
fn login(port: u16, user: &str, password: &str) -> (String, String) {
    let reply = form(
        port,
        "/login",
        &[("user", user), ("password", password)],
        None,
    )
    .send()
    .unwrap();
    assert_eq!(reply.status, 303, "{}", reply.text());
    let set_cookie = header(&reply, "set-cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    (cookie, set_cookie)
}

/// The form token of the page the session sees.
fn csrf(port: u16, cookie: &str) -> String {
    let text = page(port, "/", cookie).text();
    let at = text
        .find("name=\"csrf\" value=\"")
        .expect("the page has a form token")
        + 19;
    text[at..at + 64].to_owned()
}

#[test]
fn a_console_login_sets_a_secure_host_only_cookie_and_logout_ends_the_session() {
    let mut node = Node::init("node-a");
    node.serve();
    for (port, cookie_name, product) in [
        (node.sysmgr_port, "__Host-tandem-sm=", "System Manager"),
        (node.service_port, "__Host-tandem-admin=", "Admin Portal"),
    ] {
        // Not logged in: every page sends the browser to the login page, back to it after.
        let reply = Call::new(port, Method::GET, "/").user(None).send().unwrap();
        assert_eq!(reply.status, 303);
        assert_eq!(header(&reply, "location"), "/login?next=%2F");

        let wrong = form(
            port,
            "/login",
            &[("user", "admin"), ("password", "nope")],
            None,
        )
        .send()
        .unwrap();
        assert_eq!(wrong.status, 401);
        assert!(
            wrong.text().contains("Wrong user name or password"),
            "{}",
            wrong.text()
        );
        assert!(header(&wrong, "set-cookie").is_empty());

        let (cookie, set_cookie) = login(port, "admin", PASSWORD);
        assert!(cookie.starts_with(cookie_name), "{set_cookie}");
        for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set_cookie.contains(flag), "{flag} missing: {set_cookie}");
        }
        assert!(!set_cookie.contains("Domain"), "{set_cookie}");

        let home = page(port, "/", &cookie);
        assert_eq!(home.status, 200);
        assert!(home.text().contains(product) && home.text().contains("node-a"));
        let policy = header(&home, "content-security-policy");
        assert!(
            policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"),
            "{policy}"
        );

        let token = csrf(port, &cookie);
        let out = form(port, "/logout", &[("csrf", &token)], Some(&cookie))
            .send()
            .unwrap();
        assert_eq!(out.status, 303);
        assert_eq!(header(&out, "location"), "/login?out=1");
        assert!(header(&out, "set-cookie").contains("Max-Age=0"));
        // The old cookie opens nothing any more.
        assert_eq!(page(port, "/", &cookie).status, 303);
    }
}

#[test]
fn a_form_without_its_token_or_from_another_site_is_refused_and_the_session_lives_on() {
    let mut node = Node::init("node-a");
    node.serve();
    let port = node.sysmgr_port;
    let (cookie, _) = login(port, "admin", PASSWORD);
    let token = csrf(port, &cookie);

    let missing = form(port, "/logout", &[], Some(&cookie)).send().unwrap();
    assert_eq!(missing.status, 403, "{}", missing.text());
    let other_session = form(port, "/logout", &[("csrf", &"0".repeat(64))], Some(&cookie))
        .send()
        .unwrap();
    assert_eq!(other_session.status, 403);
    // A login form posted by another site's page is refused on both consoles, so no page can
    // log a visitor into an account of its choosing.
    for console in [port, node.service_port] {
        let forged = form_from(
            console,
            "/login",
            &[("user", "admin"), ("password", PASSWORD)],
            None,
            "https://evil.example",
        )
        .send()
        .unwrap();
        assert_eq!(forged.status, 403, "{}", forged.text());
        assert!(header(&forged, "set-cookie").is_empty());
    }
    let cross_site = form_from(
        port,
        "/logout",
        &[("csrf", &token)],
        Some(&cookie),
        "https://evil.example",
    )
    .send()
    .unwrap();
    assert_eq!(cross_site.status, 403, "{}", cross_site.text());
    assert!(cross_site.text().contains("cross_site_refused"));
    // None of them logged the session out.
    assert_eq!(page(port, "/", &cookie).status, 200);
}

#[test]
fn a_password_change_ends_the_sessions_of_that_user() {
    let mut node = Node::init("node-a");
    node.serve();
    node.wait_for_state("Active");
    let port = node.sysmgr_port;
    let (cookie, _) = login(port, "admin", PASSWORD);
    assert_eq!(page(port, "/", &cookie).status, 200);
    let changed = Call::new(port, Method::PUT, "/api/v1/users/admin/password")
        .json(json!({ "password": "quartz-meadow-lantern-7" }))
        .send()
        .unwrap();
    assert_eq!(changed.status, 204, "{}", changed.text());
    let after = page(port, "/", &cookie);
    assert_eq!(after.status, 303);
    assert!(header(&after, "location").starts_with("/login"));
    // The new password logs in.
    login(port, "admin", "quartz-meadow-lantern-7");
}

#[test]
fn console_logins_share_the_back_off_of_http_basic_and_never_redirect_off_site() {
    let mut node = Node::init("node-a");
    node.serve();
    let port = node.sysmgr_port;
    // After login the browser goes to the page it asked for, but only on this console.
    let reply = form(
        port,
        "/login",
        &[
            ("user", "admin"),
            ("password", PASSWORD),
            ("next", "/ha/sync?page=2"),
        ],
        None,
    )
    .send()
    .unwrap();
    assert_eq!(header(&reply, "location"), "/ha/sync?page=2");
    // A browser drops the tab from "/\t/evil.example", leaving "//evil.example".
    for elsewhere in [
        "https://evil.example/",
        "//evil.example/x",
        "/\t/evil.example/",
    ] {
        let reply = form(
            port,
            "/login",
            &[
                ("user", "admin"),
                ("password", PASSWORD),
                ("next", elsewhere),
            ],
            None,
        )
        .send()
        .unwrap();
        assert_eq!(header(&reply, "location"), "/", "{elsewhere}");
    }

    // Wrong passwords from one address: the form is held back as HTTP Basic is.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let reply = form(
            port,
            "/login",
            &[("user", "admin"), ("password", "guess")],
            None,
        )
        .send()
        .unwrap();
        statuses.push(reply.status);
        if reply.status == 429 {
            assert!(header(&reply, "retry-after").parse::<u64>().unwrap() >= 1);
            assert!(reply.text().contains("Try again in"), "{}", reply.text());
            // HTTP Basic from the same address is held too: one back-off per source.
            let basic = Call::new(port, Method::GET, "/api/v1/status")
                .user(Some(("admin", "guess")))
                .send()
                .unwrap();
            assert_eq!(basic.status, 429);
            return;
        }
    }
    panic!("eight wrong passwords in a row were never held back: {statuses:?}");
}
