//! A write load for the process tests: clients creating labels as fast as the target answers,
//! each recording the instant its write was acknowledged (`201`), until stopped.

use super::node::try_https_within;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a write may take before its client gives up and writes the next one.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a refused or failed write (a Standby, no backend, a cut link): no busy loop.
const FAILURE_PAUSE: Duration = Duration::from_millis(20);

pub struct Writers {
    acknowledged: Arc<Mutex<Vec<(String, Instant)>>>,
    stop: Arc<AtomicBool>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    /// `clients` writers against the TLS listener on loopback `port` (a node's service port, or
    /// a traffic controller's device port); label names are `{tag}-{client}-{n}`.
    pub fn start(port: u16, clients: usize, tag: &str) -> Self {
        let acknowledged: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|client| {
                let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
                let prefix = format!("{tag}-{client}");
                std::thread::spawn(move || {
                    let mut index = 0;
                    while !stop.load(Ordering::Acquire) {
                        let name = format!("{prefix}-{index}");
                        index += 1;
                        let answer = try_https_within(
                            port,
                            reqwest::Method::POST,
                            "/api/v2/labels",
                            Some(serde_json::json!({ "name": name })),
                            WRITE_TIMEOUT,
                        );
                        match answer {
                            Ok((201, _)) => {
                                acknowledged.lock().unwrap().push((name, Instant::now()))
                            }
                            _ => std::thread::sleep(FAILURE_PAUSE),
                        }
                    }
                })
            })
            .collect();
        Self {
            acknowledged,
            stop,
            clients,
        }
    }

    /// Writes acknowledged so far.
    pub fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Waits until `more` writes beyond those acknowledged now are acknowledged; `when` says in
    /// which phase, should they never be.
    pub fn wait_for_more(&self, more: usize, when: &str) {
        let target = self.count() + more;
        super::node::wait_until(
            || format!("no {more} more writes were acknowledged {when}"),
            || self.count() >= target,
        );
    }

    /// Stops the clients; every write they had acknowledged, with when.
    pub fn stop(self) -> Vec<(String, Instant)> {
        self.stop.store(true, Ordering::Release);
        for client in self.clients {
            client.join().unwrap();
        }
        self.acknowledged.lock().unwrap().clone()
    }
}
