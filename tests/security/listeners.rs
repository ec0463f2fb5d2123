//! Limits on every listener (issue 16, item 2) and System Manager access control (item 5).
//!
//! Clients that misbehave connect from 127.0.0.2 (every 127.0.0.0/8 address is loopback on
//! Linux), so the limits per source address they run into leave the tests' own requests and
//! the peers, from 127.0.0.1, alone.

use crate::support::node::{Call, Node, describe};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where misbehaving clients connect from.
const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// How long a test waits for the node to close a connection it must close; far above the
/// limit under test, so a slow machine only makes the test slower.
const CLOSE_DEADLINE: Duration = Duration::from_secs(45);

/// A TCP connection to loopback `port` from `from`.
fn connect_from(from: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((from, 0).into())?;
        let stream = socket.connect(([127, 0, 0, 1], port).into()).await?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS session (any server certificate) to loopback `port` from `from`, offering `alpn`,
/// with `identity` (certificate and key PEM) as client certificate if given.
fn tls_from(
    from: IpAddr,
    port: u16,
    alpn: &[&[u8]],
    identity: Option<(&str, &str)>,
) -> std::io::Result<Tls> {
    tandem_crypto::install_crypto_provider();
    let builder = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(tandem_crypto::tls::PinnedCertificate::any()));
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((certificate, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(certificate.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = connect_from(from, port)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    // TLS 1.3: the server sees (and may refuse) the client certificate after the client has
    // finished; a read shows the refusal.
    Ok(tls)
}

/// Reads until the peer closes the connection or `deadline` passes; `true` when it closed.
/// What arrives meanwhile (an answer) is collected into `received`.
fn closed_within(stream: &mut impl Read, deadline: Duration, received: &mut Vec<u8>) -> bool {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset, or TLS ending without close_notify: closed all the same.
            Err(_) => return true,
        }
    }
    false
}

/// Adds `lines` to the `[listeners]` table of the node's `tandem.toml`.
fn set_listener_limits(node: &Node, lines: &str) {
    let path = node.dir.join("tandem.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("[listeners]\n", &format!("[listeners]\n{lines}\n")),
    )
    .unwrap();
}

/// Appends a `[system_manager]` table to the node's `tandem.toml`.
fn set_system_manager(node: &Node, lines: &str) {
    let path = node.dir.join("tandem.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!("\n[system_manager]\n{lines}\n"));
    std::fs::write(&path, text).unwrap();
}

/// What the node wrote to its stderr (its log, at `TANDEM_LOG=warn`).
fn node_log(node: &Node) -> String {
    std::fs::read_to_string(node.dir.with_extension("stderr.log")).unwrap_or_default()
}

/// Sixteen idle TCP connections used to hold every place of the replication listener for
/// 120 s: no deadline before authentication, no limit per address. Now one address holds at
/// most four unauthenticated connections (the rest are closed at once), so a peer's Test
/// Connection and sync still get through.
#[test]
fn idle_connections_from_one_address_cannot_keep_a_peer_out_of_replication() {
    let (mut a, b) = (Node::init("node-a"), Node::init("node-b"));
    a.trust(&b);
    b.trust(&a);
    a.serve();
    let idle: Vec<TcpStream> = (0..16)
        .map(|_| connect_from(ELSEWHERE, a.ssh_port).unwrap())
        .collect();
    let test = b.cli(&["ha", "test-connection", &a.endpoint()]);
    assert!(test.status.success(), "{}", describe(&test));
    let sync = b.cli(&["failover", "sync", &a.endpoint()]);
    assert!(sync.status.success(), "{}", describe(&sync));
    drop(idle);
}

/// A connection that never authenticates is closed at the pre-authentication deadline (10 s),
/// not after the 120 s idle timeout.
#[test]
fn a_replication_connection_that_never_authenticates_is_closed_at_the_deadline() {
    let mut a = Node::init("node-a");
    a.serve();
    let mut idle = connect_from(ELSEWHERE, a.ssh_port).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut banner = Vec::new();
    let started = Instant::now();
    assert!(
        closed_within(&mut idle, CLOSE_DEADLINE, &mut banner),
        "the connection was still open after {CLOSE_DEADLINE:?}"
    );
    assert!(String::from_utf8_lossy(&banner).starts_with("SSH-2.0-"));
    eprintln!(
        "unauthenticated replication connection closed after {:?}",
        started.elapsed()
    );
}

/// A peer whose key was never added to Trusted Hosts is refused when it offers its key, and
/// the node says so: a WARN with the key's SHA256 fingerprint and the peer's address.
#[test]
fn a_refused_replication_key_is_logged_with_its_fingerprint_and_address() {
    let (mut a, b) = (Node::init("node-a"), Node::init("node-b"));
    b.trust(&a); // but a does not trust b
    a.serve();
    let refused = b.cli(&["ha", "test-connection", &a.endpoint()]);
    assert!(!refused.status.success(), "{}", describe(&refused));
    let key = b.ok(&["ha", "local-key"]);
    let fingerprint = tandem_crypto::TrustedKey::parse(key.trim())
        .unwrap()
        .fingerprint;
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    crate::support::node::wait_until(
        || format!("no WARN naming {fingerprint}:\n{}", node_log(&a)),
        || {
            node_log(&a).lines().any(|line| {
                line.contains("WARN") && line.contains(&fingerprint) && line.contains("127.0.0.1")
            })
        },
    );
}

/// The procedure of docs/security.md for rotating a node's SSH key: stop the node, replace its key file,
/// start it. Its peers refuse the new key (naming both fingerprints) until an operator gives
/// them the new `local-key`; then replication works again.
#[test]
fn a_rotated_ssh_key_is_refused_until_the_peers_are_given_it() {
    let (mut a, b) = (Node::init("node-a"), Node::init("node-b"));
    a.trust(&b);
    b.trust(&a);
    a.serve();
    b.ok(&["ha", "test-connection", &a.endpoint()]);
    let old = tandem_crypto::TrustedKey::parse(a.ok(&["ha", "local-key"]).trim())
        .unwrap()
        .fingerprint;
    a.kill_9();
    let key = tandem_crypto::SshHostKey::generate().unwrap();
    let key_file = a.dir.join("ssh_host_ed25519_key");
    std::fs::remove_file(&key_file).unwrap();
    std::fs::write(&key_file, key.private_openssh().unwrap()).unwrap();
    a.serve();
    let new = tandem_crypto::TrustedKey::parse(a.ok(&["ha", "local-key"]).trim())
        .unwrap()
        .fingerprint;
    assert_ne!(old, new);
    let refused = b.cli(&["ha", "test-connection", &a.endpoint()]);
    assert!(!refused.status.success(), "{}", describe(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&new) && stderr.contains(&old) && stderr.contains("trusted-hosts add"),
        "{stderr}"
    );
    b.trust(&a);
    b.ok(&["ha", "test-connection", &a.endpoint()]);
}

/// An HTTP/1.1 client that completes TLS and then sends nothing used to hold its connection
/// for ever: hyper's header timeout started only with the first byte, after the protocol was
/// sniffed. Now the first request has the same 30 s as every other (the default, unchanged).
#[test]
fn an_https_connection_that_sends_nothing_after_tls_is_closed() {
    let mut node = Node::init("node-a");
    node.serve();
    let mut silent = tls_from(ELSEWHERE, node.service_port, &[b"http/1.1"], None).unwrap();
    silent
        .sock
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut silent, CLOSE_DEADLINE, &mut Vec::new()),
        "still open after {CLOSE_DEADLINE:?}"
    );
    eprintln!(
        "silent HTTP/1.1 connection closed after {:?}",
        started.elapsed()
    );
}

/// An HTTP/2 connection with no stream open was never closed (hyper has no idle timeout for
/// HTTP/2). Now a connection with no request in progress for `idle_timeout_s` is told to go
/// away (GOAWAY) and closed.
#[test]
fn an_idle_http2_connection_is_closed() {
    let mut node = Node::init("node-a");
    set_listener_limits(&node, "idle_timeout_s = 2");
    node.serve();
    let mut h2 = tls_from(ELSEWHERE, node.service_port, &[b"h2"], None).unwrap();
    assert_eq!(h2.conn.alpn_protocol(), Some(b"h2".as_slice()));
    // The client preface and an empty SETTINGS frame: a connection, and nothing asked.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    h2.sock
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut frames = Vec::new();
    assert!(
        closed_within(&mut h2, CLOSE_DEADLINE, &mut frames),
        "still open after {CLOSE_DEADLINE:?}"
    );
    // A GOAWAY frame (type 7) came before the close.
    assert!(
        goaway_sent(&frames),
        "no GOAWAY among {} bytes",
        frames.len()
    );
}

/// Whether the HTTP/2 frames in `bytes` include a GOAWAY.
fn goaway_sent(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while rest.len() >= 9 {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        if rest[3] == 7 {
            return true;
        }
        rest = &rest[(9 + length).min(rest.len())..];
    }
    false
}

/// A body sent one byte every 5 s to the unauthenticated enrollment endpoint held its
/// connection as long as the client liked. Now a body must be whole within
/// `body_read_timeout_s` (10 s by default, unchanged here) plus what its size needs at 64 KiB/s:
/// the node answers with an error and closes the connection.
#[test]
fn a_request_body_trickled_to_enrollment_is_cut_off() {
    let mut node = Node::init("node-a");
    node.serve();
    node.wait_for_state("Active");
    let mut slow = tls_from(ELSEWHERE, node.service_port, &[b"http/1.1"], None).unwrap();
    slow.write_all(
        b"POST /device/v1/enroll HTTP/1.1\r\nHost: localhost\r\n\
          Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{",
    )
    .unwrap();
    slow.flush().unwrap();
    slow.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = loop {
        assert!(
            started.elapsed() < CLOSE_DEADLINE,
            "no answer after {CLOSE_DEADLINE:?}"
        );
        match slow.read(&mut buffer) {
            Ok(0) => break true,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break true,
        }
        // One more byte every 5 s (the read waited that long).
        if slow.write_all(b" ").and_then(|()| slow.flush()).is_err() {
            break true;
        }
    };
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed, "the connection stays open");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    eprintln!(
        "trickled enrollment body cut off after {:?}: {}",
        started.elapsed(),
        answer
            .lines()
            .next()
            .unwrap_or("(closed without an answer)")
    );
}

/// One source address may hold only `connections_per_address_max` connections on a listener;
/// beyond them its connections are closed at once, while other addresses (the probes) and
/// the networks exempt from the limit (a load balancer) are served.
#[test]
fn one_address_cannot_take_every_connection_of_a_listener() {
    let mut node = Node::init("node-a");
    set_listener_limits(
        &node,
        "connections_per_address_max = 4\nconnections_per_address_exempt = [\"127.0.0.3/32\"]",
    );
    node.serve();
    node.wait_for_state("Active");
    let held: Vec<TcpStream> = (0..4)
        .map(|_| connect_from(ELSEWHERE, node.service_port).unwrap())
        .collect();
    // The fifth from that address is closed before TLS.
    let mut fifth = connect_from(ELSEWHERE, node.service_port).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    assert!(closed_within(&mut fifth, CLOSE_DEADLINE, &mut Vec::new()));
    // The probe, from another address, is answered.
    assert_eq!(node.get("/status/status.html").0, 200);
    // The load balancer's address holds more.
    let exempt = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let balancer: Vec<Tls> = (0..6)
        .map(|_| tls_from(exempt, node.service_port, &[b"http/1.1"], None).unwrap())
        .collect();
    drop((held, balancer));
    assert!(
        node_log(&node).contains("connection limit per address reached"),
        "{}",
        node_log(&node)
    );
}

/// A GET as admin on the System Manager listener from `from`: the status code and the headers.
fn system_manager_get(
    node: &Node,
    from: IpAddr,
    path: &str,
    identity: Option<&str>,
) -> Result<(u16, reqwest::header::HeaderMap), String> {
    let mut call = Call::new(node.sysmgr_port, reqwest::Method::GET, path).from(from);
    if let Some(pem) = identity {
        call = call.identity(pem);
    }
    call.send().map(|reply| (reply.status, reply.headers))
}

/// `[system_manager] allow`: a client from elsewhere is closed before TLS and logged with its
/// address; one from an allowed network is served.
#[test]
fn the_system_manager_serves_only_the_allowed_networks() {
    let mut node = Node::init("node-a");
    set_system_manager(&node, "allow = [\"127.0.0.2/32\", \"10.0.0.0/8\"]");
    node.serve();
    let from_loopback =
        system_manager_get(&node, "127.0.0.1".parse().unwrap(), "/api/v1/status", None);
    assert!(from_loopback.is_err(), "{from_loopback:?}");
    let (code, _) = system_manager_get(&node, ELSEWHERE, "/api/v1/status", None).unwrap();
    assert_eq!(code, 200);
    let log = node_log(&node);
    assert!(
        log.lines().any(|line| line.contains("WARN")
            && line.contains("outside the allowed client networks")
            && line.contains("127.0.0.1:")),
        "{log}"
    );
    // The service listener is not restricted.
    assert_eq!(node.get("/status/status.html").0, 200);
}

/// A malformed network in `allow` stops the node with the key, the value and the fix.
#[test]
fn a_malformed_allowed_network_is_refused_naming_it() {
    let node = Node::init("node-a");
    set_system_manager(&node, "allow = [\"10.0.0.0/33\"]");
    let serve = node.cli(&["serve"]);
    assert!(!serve.status.success(), "{}", describe(&serve));
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(
        stderr.contains("[system_manager] allow: \"10.0.0.0/33\"")
            && stderr.contains("write a CIDR like"),
        "{stderr}"
    );
}

/// `[system_manager] client_ca`: only a client with a certificate that CA signed is served.
#[test]
fn the_system_manager_can_require_a_client_certificate() {
    let mut node = Node::init("node-a");
    let now = time::OffsetDateTime::now_utc();
    let admins = tandem_crypto::CertificateAuthority::generate("Admin CA", now).unwrap();
    let strangers = tandem_crypto::CertificateAuthority::generate("Other CA", now).unwrap();
    std::fs::write(node.dir.join("admin-ca.pem"), admins.certificate_pem()).unwrap();
    set_system_manager(&node, "client_ca = \"admin-ca.pem\"");
    node.serve();
    let pem = |ca: &tandem_crypto::CertificateAuthority| {
        let issued = ca.issue_device_identity("operator", now).unwrap().issued;
        (issued.certificate_pem, issued.private_key_pem)
    };
    let (certificate, key) = pem(&admins);
    let identity = format!("{certificate}{key}");
    let (code, _) = system_manager_get(
        &node,
        "127.0.0.1".parse().unwrap(),
        "/api/v1/status",
        Some(&identity),
    )
    .unwrap();
    assert_eq!(code, 200);
    let none = system_manager_get(&node, "127.0.0.1".parse().unwrap(), "/api/v1/status", None);
    assert!(none.is_err(), "{none:?}");
    let (certificate, key) = pem(&strangers);
    let other = format!("{certificate}{key}");
    let refused = system_manager_get(
        &node,
        "127.0.0.1".parse().unwrap(),
        "/api/v1/status",
        Some(&other),
    );
    assert!(refused.is_err(), "{refused:?}");
}

/// Every System Manager answer, the portal's pages and refusals included, and the service
/// listener's API answers carry the security headers.
#[test]
fn answers_carry_the_security_headers() {
    let mut node = Node::init("node-a");
    node.serve();
    node.wait_for_state("Active");
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let expected = [
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        ("content-security-policy", "frame-ancestors 'none'"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
    ];
    for path in ["/", "/ha/config", "/api/v1/status", "/no-such-page"] {
        let (code, headers) = system_manager_get(&node, loopback, path, None).unwrap();
        assert!(code < 500, "{path}: {code}");
        for (name, value) in expected {
            let sent = headers.get(name).and_then(|v| v.to_str().ok());
            if name == "content-security-policy" {
                // Console pages send a stricter policy of their own, which still forbids framing.
                assert!(
                    sent.is_some_and(|sent| sent.contains(value)),
                    "{path}: {sent:?}"
                );
            } else {
                assert_eq!(sent, Some(value), "{path}: {name}");
            }
        }
    }
    // Without credentials: a refusal carries them too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sysmgr, service) = (node.sysmgr_port, node.service_port);
    let refusals = runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let mut refusals = Vec::new();
        for url in [
            format!("https://127.0.0.1:{sysmgr}/api/v1/status"),
            format!("https://127.0.0.1:{service}/api/v2/ping"),
        ] {
            let answer = client.get(url).send().await.unwrap();
            refusals.push((answer.status().as_u16(), answer.headers().clone()));
        }
        refusals
    });
    for (code, headers) in refusals {
        assert_eq!(code, 401);
        for (name, value) in expected {
            assert_eq!(
                headers.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{name}"
            );
        }
    }
}
