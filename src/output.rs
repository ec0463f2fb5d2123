//! Standard output that a closed reader cannot crash. `tandem ha status | head -3` closes the
//! pipe after three lines; `println!` would then panic (exit 101) in the middle of a command
//! that may be running a sync. Here the first broken-pipe error silences further output and the
//! command carries on to its end and its usual exit code: cutting the output never cuts the work.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout's reader has gone away.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether stdout's reader has gone away (a command that would print for ever stops then).
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

pub fn write(args: std::fmt::Arguments) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(args)
        && error.kind() == std::io::ErrorKind::BrokenPipe
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!` to stdout, quiet once the reader has gone.
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` to stdout, quiet once the reader has gone.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};
