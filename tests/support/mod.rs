//! Helpers shared by the process-level test binaries (`tests/process.rs`, `tests/replication.rs`).

use std::process::Child;

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// Sends SIGKILL (std's `Child::kill` on Unix) and reaps the process. Returns whether the
/// signal was delivered: false when the process had already been reaped.
pub fn kill_9(child: &mut Child) -> bool {
    let delivered = child.kill().is_ok();
    let _ = child.wait();
    delivered
}
