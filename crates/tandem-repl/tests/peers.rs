//! Two nodes in one process, talking over real SSH on loopback: the schedule never discards a
//! node's own changes, and the replication listener offers nothing but replication.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use tandem_node::{InitOptions, Node};
use tandem_repl::sync::{self, SyncOptions};
use tandem_repl::{Replication, ReplicationError};
use tandem_store::history::Trigger;
use tandem_store::trust::{self, Endpoint};
use tandem_store::{changes, users};

fn node(dir: &Path, name: &str) -> Node {
    tandem_node::init(&InitOptions {
        data_dir: dir.join(name),
        name: name.into(),
        service_addr: "127.0.0.1:4443".into(),
        system_manager_addr: "127.0.0.1:8443".into(),
        replication_addr: "127.0.0.1:2222".into(),
        admin_user: "admin".into(),
        admin_password: Some("correct-horse-1".into()),
        tls_names: Vec::new(),
    })
    .unwrap();
    Node::open(&dir.join(name)).unwrap()
}

async fn add_user(node: &Node, principal: &str) {
    let input = users::UserInput {
        principal: Some(principal.into()),
        email: None,
        first_name: None,
        last_name: None,
    };
    node.replicated
        .write(move |conn| users::create(conn, "admin", &input))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_sync_refuses_a_diverged_history_and_changes_nothing() {
    tandem_crypto::install_crypto_provider();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_owned();
    let (a, b) = tokio::task::spawn_blocking(move || (node(&dir, "node-a"), node(&dir, "node-b")))
        .await
        .unwrap();
    let (source, target) = (Replication::new(&a), Replication::new(&b));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = Endpoint::parse(&listener.local_addr().unwrap().to_string()).unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(tandem_repl::ssh::serve(source.clone(), listener, stopped));
    let a_key = source.public_key_line();
    let b_key = target.public_key_line();
    let trusted = endpoint.clone();
    b.local
        .database()
        .write(move |conn| trust::add(conn, &trusted, &a_key))
        .await
        .unwrap();
    let peer = Endpoint::parse("127.0.0.1:1").unwrap();
    a.local
        .database()
        .write(move |conn| trust::add(conn, &peer, &b_key))
        .await
        .unwrap();
    let options = |trigger| SyncOptions {
        trigger,
        force_full: false,
    };
    let quiet: sync::ProgressSink = std::sync::Arc::new(|_| {});

    // The first sync of a fresh node is not a divergence, even on the schedule.
    let first = sync::run(
        &target,
        &endpoint,
        options(Trigger::Scheduled),
        quiet.clone(),
    )
    .await
    .unwrap();
    assert_eq!(first.kind, "full");

    // Both sides write on their own.
    add_user(&a, "on-a@example.com").await;
    add_user(&b, "on-b@example.com").await;
    let before = b.replicated.read(changes::position).await.unwrap();

    let refused = sync::run(
        &target,
        &endpoint,
        options(Trigger::Scheduled),
        quiet.clone(),
    )
    .await
    .unwrap_err();
    let ReplicationError::Diverged {
        local_entries,
        fork_seq,
        ..
    } = &refused
    else {
        panic!("expected a divergence, got {refused}");
    };
    assert_eq!(*local_entries, 2, "one user and its audit event");
    assert_eq!(*fork_seq, before.seq - 2);
    assert!(
        refused.to_string().contains("tandem failover sync"),
        "{refused}"
    );
    assert_eq!(b.replicated.read(changes::position).await.unwrap(), before);
    // The first sync exported nothing (a fresh node's own initial data, its secrets included,
    // is never written out), and the refused one nothing either.
    assert!(!b.data_dir.join(sync::DIVERGENCE_DIR).exists());

    // An operator's sync saves b's change and resyncs.
    let manual = sync::run(&target, &endpoint, options(Trigger::Manual), quiet.clone())
        .await
        .unwrap();
    assert_eq!(manual.kind, "full");
    let saved = std::fs::read_to_string(manual.diverged_file.unwrap()).unwrap();
    assert!(saved.contains("on-b@example.com"));
    assert_eq!(
        b.replicated.read(changes::position).await.unwrap(),
        a.replicated.read(changes::position).await.unwrap()
    );

    // A sync that meets a running one changes nothing, says why, and is recorded as skipped.
    let running = target.sync_lock().await;
    let busy = sync::run(&target, &endpoint, options(Trigger::Scheduled), quiet)
        .await
        .unwrap_err();
    drop(running);
    assert!(matches!(busy, ReplicationError::Busy(_)), "{busy}");
    let newest = b
        .local
        .database()
        .read(|conn| tandem_store::history::recent(conn, 1))
        .await
        .unwrap();
    assert_eq!(
        (newest[0].trigger.as_str(), newest[0].result.as_str()),
        ("scheduled", "skipped")
    );
}

struct AnyServerKey;

impl russh::client::Handler for AnyServerKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Waits for the server's answer to a request sent with `want_reply`.
async fn answer(channel: &mut russh::Channel<russh::client::Msg>) -> &'static str {
    loop {
        match channel.wait().await {
            Some(russh::ChannelMsg::Success) => return "success",
            Some(russh::ChannelMsg::Failure) => return "failure",
            None => return "closed",
            Some(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_offers_only_replication_and_only_to_trusted_keys() {
    tandem_crypto::install_crypto_provider();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_owned();
    let (a, b, stranger) = tokio::task::spawn_blocking(move || {
        (
            node(&dir, "node-a"),
            node(&dir, "node-b"),
            node(&dir, "stranger"),
        )
    })
    .await
    .unwrap();
    let source = Replication::new(&a);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(tandem_repl::ssh::serve(source, listener, stopped));
    let b_key = Replication::new(&b).public_key_line();
    let somewhere = Endpoint::parse("127.0.0.1:1").unwrap();
    a.local
        .database()
        .write(move |conn| trust::add(conn, &somewhere, &b_key))
        .await
        .unwrap();
    let config = std::sync::Arc::new(russh::client::Config::default());
    let key_of = |node: &Node| {
        russh::keys::PrivateKeyWithHashAlg::new(
            std::sync::Arc::new(node.ssh_host_key.private_key().clone()),
            None,
        )
    };

    // Passwords are not a method at all; an untrusted key is refused.
    let mut session = russh::client::connect(config.clone(), addr, AnyServerKey)
        .await
        .unwrap();
    let password = session
        .authenticate_password("tandem", "correct-horse-1")
        .await
        .unwrap();
    assert!(!password.success());
    let untrusted = session
        .authenticate_publickey("tandem", key_of(&stranger))
        .await
        .unwrap();
    assert!(!untrusted.success());

    // A trusted key: no shell, no exec, no forwarding; the replication subsystem only.
    let mut session = russh::client::connect(config, addr, AnyServerKey)
        .await
        .unwrap();
    let trusted = session
        .authenticate_publickey("tandem", key_of(&b))
        .await
        .unwrap();
    assert!(trusted.success());
    let mut channel = session.channel_open_session().await.unwrap();
    channel.exec(true, "id").await.unwrap();
    assert_eq!(answer(&mut channel).await, "failure");
    channel.request_shell(true).await.unwrap();
    assert_eq!(answer(&mut channel).await, "failure");
    channel.request_subsystem(true, "sftp").await.unwrap();
    assert_eq!(answer(&mut channel).await, "failure");
    assert!(
        session
            .channel_open_direct_tcpip("127.0.0.1", 22, "127.0.0.1", 5000)
            .await
            .is_err()
    );
    assert!(session.tcpip_forward("127.0.0.1", 0).await.is_err());
    let mut replication = session.channel_open_session().await.unwrap();
    replication
        .request_subsystem(true, tandem_repl::protocol::SUBSYSTEM)
        .await
        .unwrap();
    assert_eq!(answer(&mut replication).await, "success");
}
