//! `tandem`: the one binary. It parses the command line, builds configuration, and hands off to
//! the library crates; no logic lives here that a test would want to reach.

mod backup;
mod cli;
mod demo;
mod ha;
mod lb;
mod logging;
mod output;
mod users;

use std::process::ExitCode;

fn main() -> ExitCode {
    tune_allocator();
    private_files();
    tandem_crypto::install_crypto_provider();
    let cli = <cli::Cli as clap::Parser>::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tandem: error: {error:#}");
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}

/// Everything the node writes (databases, keys, exports, the control socket) is for its own user:
/// new files are created 0600 and directories 0700 whatever umask the service manager passed.
// One of the two places Tandem uses `unsafe` (denied elsewhere by [workspace.lints]).
#[allow(unsafe_code)]
fn private_files() {
    // SAFETY: umask only sets this process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// glibc's malloc returns freed memory to the kernel eagerly and serves mid-sized buffers (TLS
/// records, SQLite pages) with fresh `mmap`s; under check-in load the resulting page faults and
/// `madvise` calls cost a measurable share of the CPU (BENCHMARKS.md). Raising both thresholds keeps
/// that memory in the process: the trim threshold bounds what may sit unused (512 MiB on a server
/// sized for a fleet), the mmap threshold only moves allocations up to 16 MiB into the heap. It
/// stays below an argon2id check's 19 MiB, which is then mapped and returned at once: kept in
/// the heap, each password-check thread's arena held several of them for good (a wrong-password
/// flood left a node at 240 MB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
// The other place Tandem uses `unsafe`.
#[allow(unsafe_code)]
fn tune_allocator() {
    const TRIM_THRESHOLD_BYTES: libc::c_int = 512 << 20;
    const MMAP_THRESHOLD_BYTES: libc::c_int = 16 << 20;
    // SAFETY: mallopt only adjusts allocator parameters; it is called before any thread starts and
    // its failure (a zero return) merely leaves glibc's defaults in place.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
