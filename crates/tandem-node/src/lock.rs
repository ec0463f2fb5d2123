//! One process at a time writes a node's databases: `tandem serve`, or a CLI command that runs
//! an operation itself because no node is serving. The holder keeps an exclusive lock on
//! `DIR/tandem.lock` for as long as it has the node open, and writes who it is into the file so
//! the one refused can say whom to wait for.
//!
//! The lock is `flock(2)`-style (std's `File::try_lock`): the kernel drops it when the holder
//! exits, even by `kill -9`, so a crash never leaves a node locked; a stale file is harmless.

use crate::{NodeError, io_error};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub const LOCK_FILE: &str = "tandem.lock";

/// Longest holder description read back from the lock file (it is one line the holder wrote).
const HOLDER_CHARS_MAX: usize = 300;

/// Held while the node is open; dropping it (or the process ending) releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock on `data_dir` at once or explains who holds it; it never waits, so a
    /// command the operator runs beside a serving node fails fast instead of hanging.
    pub fn acquire(data_dir: &Path) -> Result<Self, NodeError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder: String = holder.trim().chars().take(HOLDER_CHARS_MAX).collect();
                let holder = if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    holder
                };
                return Err(NodeError::Locked(format!(
                    "the node in {} is in use by {holder}: one process at a time has a node's \
                     databases open. Wait for that process to finish, or stop it (a serving node \
                     stops cleanly on SIGTERM)",
                    data_dir.display()
                )));
            }
            Err(TryLockError::Error(error)) => return Err(io_error(&path)(error)),
        }
        // Who holds it, for the next one refused; the lock is what counts, so a failure to
        // write this only makes that message vaguer.
        let mut command = Vec::new();
        let mut arguments = std::env::args().skip(1);
        while let Some(argument) = arguments.next() {
            // The directory is in the message already.
            if argument == "--data-dir" {
                arguments.next();
            } else if !argument.starts_with("--data-dir=") && command.len() < 4 {
                command.push(argument);
            }
        }
        let since = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(
            file,
            "`tandem {}` (pid {}, since {since})",
            command.join(" "),
            std::process::id()
        );
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let refused = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        assert!(refused.contains("one process at a time"), "{refused}");
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
