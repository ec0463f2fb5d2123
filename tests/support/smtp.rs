//! A real SMTP server for notification tests: `aiosmtpd` (PyPI) in its own process, storing
//! each message it accepts in a Maildir. Without Python's `aiosmtpd` the tests that need it
//! print why and return, unless `TANDEM_REQUIRE_ALL=1` (`scripts/test` installs it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpServer {
    pub port: u16,
    child: Child,
    maildir: PathBuf,
    _temp: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts the server on a free loopback port; `None` when aiosmtpd is missing.
    pub fn start() -> Option<Self> {
        let install = "pip install aiosmtpd";
        match Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .output()
        {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                let why = String::from_utf8_lossy(&output.stderr);
                super::skip_without("aiosmtpd", why.trim(), install);
                return None;
            }
            Err(error) => {
                super::skip_without("python3", &error.to_string(), install);
                return None;
            }
        }
        let temp = tempfile::tempdir().unwrap();
        let maildir = temp.path().join("maildir");
        let port = super::free_port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let server = Self {
            port,
            child,
            maildir,
            _temp: temp,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    pub fn relay(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every message received so far, as raw text with quoted-printable soft breaks undone.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut messages: Vec<String> = entries
            .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
            .map(|text| text.replace("=\n", "").replace("=\r\n", ""))
            .collect();
        messages.sort();
        messages
    }

    /// Waits (up to 30 s) for a message containing every one of `needles`; returns it.
    pub fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = self
                .messages()
                .into_iter()
                .find(|message| needles.iter().all(|needle| message.contains(needle)))
            {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no e-mail with {needles:?} arrived; received: {:#?}",
                self.messages()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        super::kill_9(&mut self.child);
    }
}
