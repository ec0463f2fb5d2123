//! Helpers shared by the process-level test binaries (`tests/process.rs`, `tests/replication.rs`,
//! `tests/ha.rs`, `tests/haproxy.rs`, `tests/lb.rs`). Each binary uses a part of them.
#![allow(dead_code)]

pub mod lb;
pub mod load;
pub mod node;
pub mod smtp;

use std::process::Child;

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
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
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
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
        let (up2, stop2, open2) = (up.clone(), stop.clone(), open.clone());
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
                        for pipe in pipes {
                            if let (Ok(mut from), Ok(mut to)) = pipe {
                                std::thread::spawn(move || {
                                    let _ = std::io::copy(&mut from, &mut to);
                                    let _ = to.shutdown(std::net::Shutdown::Both);
                                });
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            up,
            open,
            stop,
        }
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

/// `N` distinct loopback ports nothing listens on right now (held together while chosen, so
/// the OS cannot hand out one twice).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    std::array::from_fn(|index| {
        listeners[index]
            .local_addr()
            .map(|addr| addr.port())
            .expect("a bound port")
    })
}
