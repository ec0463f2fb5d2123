//! Structured logs on stderr: text for people, JSON for collectors.
//!
//! Text lines are safe to read in a terminal and to parse by line: colour only when stderr is a
//! terminal (and `NO_COLOR` is unset), and every control character a value carries (a user name
//! or URL sent by a client) is escaped, so a client cannot forge a log line or move the cursor.
//! JSON lines need nothing: JSON escapes control characters in strings.

use crate::cli::LogFormat;
use std::borrow::Cow;
use std::io::{IsTerminal, Write};

pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
            builder
                .with_ansi(colour)
                .with_writer(move || Escaping {
                    inner: std::io::stderr(),
                    keep_escape: colour,
                })
                .init()
        }
        LogFormat::Json => builder
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .json()
            .init(),
    }
}

/// A writer that receives one formatted event per `write` (the fmt layer writes each event's
/// line with one `write_all`) and escapes the control characters inside it.
struct Escaping<W> {
    inner: W,
    /// With colour on, ESC starts the formatter's own colour codes; tracing-subscriber already
    /// escapes ESC inside field values.
    keep_escape: bool,
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.inner
            .write_all(&escape_controls(line, self.keep_escape))?;
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn needs_escape(byte: u8, keep_escape: bool) -> bool {
    match byte {
        b'\t' => false,
        0x1b => !keep_escape,
        byte => byte < 0x20 || byte == 0x7f,
    }
}

/// `line` with its control characters written as `\n`, `\r` or `\xNN`, except the final newline
/// that ends the event.
fn escape_controls(line: &[u8], keep_escape: bool) -> Cow<'_, [u8]> {
    let (body, end): (&[u8], &[u8]) = match line.strip_suffix(b"\n") {
        Some(body) => (body, b"\n"),
        None => (line, b""),
    };
    if !body.iter().any(|&byte| needs_escape(byte, keep_escape)) {
        return Cow::Borrowed(line);
    }
    let mut escaped = Vec::with_capacity(line.len() + 16);
    for &byte in body {
        match byte {
            b'\n' => escaped.extend_from_slice(b"\\n"),
            b'\r' => escaped.extend_from_slice(b"\\r"),
            byte if needs_escape(byte, keep_escape) => {
                // Writing to a Vec cannot fail.
                let _ = write!(escaped, "\\x{byte:02x}");
            }
            byte => escaped.push(byte),
        }
    }
    escaped.extend_from_slice(end);
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_line_and_terminal_codes_are_escaped_and_the_event_still_ends_its_line() {
        let line = b"WARN authentication failed user=\"x\nINFO forged\" path=/\x1b[2J\r\x07\n";
        assert_eq!(
            escape_controls(line, false).as_ref(),
            b"WARN authentication failed user=\"x\\nINFO forged\" path=/\\x1b[2J\\r\\x07\n"
        );
        // With colour on, the formatter's own codes stay.
        assert_eq!(
            escape_controls(b"\x1b[33mWARN\x1b[0m a\nb\n", true).as_ref(),
            b"\x1b[33mWARN\x1b[0m a\\nb\n"
        );
    }

    #[test]
    fn an_ordinary_line_is_passed_through_untouched() {
        let line = b"INFO serving node=node-a\ttab\n";
        assert!(matches!(escape_controls(line, false), Cow::Borrowed(_)));
    }
}
