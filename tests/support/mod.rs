//! Helpers shared by the process-level test binaries (`tests/process.rs`, `tests/replication.rs`,
//! `tests/ha.rs`, `tests/haproxy.rs`, `tests/lb.rs`). Each binary uses a part of them.
#![allow(dead_code)]

pub mod check;
pub mod lb;
pub mod load;
pub mod node;
pub mod smtp;

use std::process::Child;

/// Ports tests listen on come from below the kernel's ephemeral range (32768–60999 here): a
/// port the kernel chose would also be the kernel's to hand to any outgoing connection of a
/// test running beside it, and a node that later listened on it could then fail with "address
/// already in use".
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port nothing listens on right now, never handed out before by this process.
/// Each test binary starts at a random place in `TEST_PORTS` and walks on from there, so two
/// binaries running at once rarely try the same port, and a port found busy is skipped.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let next = NEXT.get_or_init(|| {
        // RandomState is seeded per process: a random start without another dependency.
        AtomicU32::new((RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u32)
    });
    for _ in 0..span {
        let port = TEST_PORTS.start + (next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?}");
}

/// Prints why a test that needs `tool` is skipped (the caller then returns, and passes); panics
/// instead when `TANDEM_REQUIRE_ALL=1`, where a silent skip would hide an untested feature.
pub fn skip_without(tool: &str, why: &str, install: &str) {
    assert!(
        std::env::var("TANDEM_REQUIRE_ALL").as_deref() != Ok("1"),
        "{tool} is not available ({why}); TANDEM_REQUIRE_ALL=1 forbids skipping: run \
         scripts/test, which installs it ({install})"
    );
    eprintln!("skipped: {tool} is not available ({why}); scripts/test installs it ({install})");
}

/// Sends SIGKILL (std's `Child::kill` on Unix) and reaps the process. Returns whether the
/// signal was delivered: false when the process had already been reaped.
pub fn kill_9(child: &mut Child) -> bool {
    let delivered = child.kill().is_ok();
    let _ = child.wait();
    delivered
}

/// A TCP proxy on loopback whose link can be cut and restored: the "network" between two
/// nodes in a partition test. Cutting closes every open connection and refuses new ones.
pub struct LinkProxy {
    pub port: u16,
    degraded: std::sync::Arc<std::sync::Mutex<Option<Degradation>>>,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A slow and lossy link, as TCP delivers it: every chunk arrives `delay` late, and a chunk
/// whose segment was "lost" waits a retransmission timeout (`stall`) more. The draws come from
/// `seed`, so a run can be repeated.
#[derive(Clone, Copy, Debug)]
pub struct Degradation {
    pub delay: std::time::Duration,
    /// Per chunk, in [0, 1].
    pub loss: f64,
    pub stall: std::time::Duration,
    pub seed: u64,
}

/// xorshift64*: a few lines of seeded randomness, enough for a fault schedule.
fn next_random(state: &mut u64) -> f64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// Copies `from` to `to`, chunk by chunk, degraded while `degraded` says so.
fn pipe(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    degraded: std::sync::Arc<std::sync::Mutex<Option<Degradation>>>,
    stream_id: u64,
) {
    use std::io::{Read, Write};
    let mut buffer = vec![0u8; 16 * 1024];
    let mut random = None;
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let now = *degraded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(link) = now {
            let state = random.get_or_insert((link.seed ^ (stream_id * 0x9E37_79B9)) | 1);
            let mut wait = link.delay;
            if next_random(state) < link.loss {
                wait += link.stall;
            }
            std::thread::sleep(wait);
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl LinkProxy {
    /// Forwards connections on a new loopback port to `target_port`.
    pub fn start(target_port: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let degraded = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (up2, stop2, open2, degraded2) =
            (up.clone(), stop.clone(), open.clone(), degraded.clone());
        let mut streams = 0u64;
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if !up2.load(Ordering::Acquire) {
                            drop(client);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target_port))
                        else {
                            continue;
                        };
                        let pipes = [
                            (client.try_clone(), server.try_clone()),
                            (server.try_clone(), client.try_clone()),
                        ];
                        {
                            let mut open = open2.lock().unwrap_or_else(|e| e.into_inner());
                            open.push(client);
                            open.push(server);
                        }
                        for ends in pipes {
                            if let (Ok(from), Ok(to)) = ends {
                                streams += 1;
                                let (degraded, id) = (degraded2.clone(), streams);
                                std::thread::spawn(move || pipe(from, to, degraded, id));
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            degraded,
            up,
            open,
            stop,
        }
    }

    /// Makes the link slow and lossy (`Some`), or healthy again (`None`).
    pub fn degrade(&self, link: Option<Degradation>) {
        *self.degraded.lock().unwrap_or_else(|e| e.into_inner()) = link;
    }

    /// Cuts the link: open connections are closed, new ones refused until [`Self::restore`].
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::Release);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for stream in open.drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.cut();
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// `N` distinct loopback ports nothing listens on right now (see [`free_port`]).
pub fn free_ports<const N: usize>() -> [u16; N] {
    std::array::from_fn(|_| free_port())
}
