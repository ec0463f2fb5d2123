//! Notification e-mail (guide: Notification Settings). Every HA notification is recorded in the
//! node-local `Notifications` log; those the configuration's Notify On selects are also e-mailed
//! through the configured SMTP relay by one sender task, off the HA controller's path: a slow or
//! dead relay never delays a heartbeat or a promotion. Each e-mail's outcome (sent, or the
//! relay's error after the last attempt) is logged too, so a notification is never silently lost.

use std::time::Duration;
use tandem_ha::config::{HaConfig, SmtpSecurity};
use tandem_ha::machine::Notification;
use tandem_store::NodeStore;
use tokio::sync::mpsc;

/// The log module where notifications and their delivery are recorded.
pub const NOTIFICATIONS_MODULE: &str = "Notifications";
/// E-mails waiting for the relay. Beyond this, a notification is logged as not e-mailed: a
/// relay that is down for hours must not hold an unbounded backlog (the log has every one).
pub const MAIL_QUEUE_MAX: usize = 32;
/// Attempts per e-mail, with [`RETRY_BACKOFF`] between them: rides out a relay restart without
/// retrying a rejected message for ever.
pub const SEND_ATTEMPTS_MAX: usize = 4;
pub const RETRY_BACKOFF: [Duration; SEND_ATTEMPTS_MAX - 1] = [
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(30),
];
/// Connecting to the relay and each SMTP exchange: a relay that hangs fails the attempt.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(15);
/// One whole attempt (connect, TLS, every exchange): a relay that trickles its answers cannot
/// hold the sender, or the operator's Test, for longer.
pub const SEND_TIMEOUT_MAX: Duration = Duration::from_secs(60);
/// Largest `smtpCaFile` read: a CA bundle is tens of kilobytes; a wrong path (a device, a
/// database) must not be read into memory.
pub const CA_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// The sender when `smtpFrom` is not set.
pub const FROM_DEFAULT: &str = "tandem@localhost";
/// The relay's port when `smtpRelay` names none: submission by STARTTLS or in clear on 25,
/// SMTPS on 465.
pub const SMTP_PORT_DEFAULT: u16 = 25;
pub const SMTPS_PORT_DEFAULT: u16 = 465;

/// Why an e-mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(
        "no notification address is set: add one with `tandem ha configure --notify-email ADDR`"
    )]
    NoAddress,
    #[error(
        "no SMTP relay is set: notifications are only logged until you set one with \
         `tandem ha configure --smtp-relay HOST[:PORT]`"
    )]
    NoRelay,
    #[error("smtpCaFile = {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("{field} = {value}: {reason}")]
    Address {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("the SMTP relay {relay} ({security}) did not take the e-mail: {reason}{hint}")]
    Relay {
        relay: String,
        security: SmtpSecurity,
        reason: String,
        hint: &'static str,
        /// The relay rejected the message itself (a 5xx answer): trying again cannot help.
        permanent: bool,
    },
}

impl MailError {
    /// Errors of the configuration (fixed by the operator, not by time): not retried, and a
    /// usage error (exit 2, HTTP 422) from the Test.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            MailError::NoAddress
                | MailError::NoRelay
                | MailError::CaFile { .. }
                | MailError::Address { .. }
        )
    }

    fn is_permanent(&self) -> bool {
        self.is_configuration()
            || matches!(
                self,
                MailError::Relay {
                    permanent: true,
                    ..
                }
            )
    }
}

/// One notification e-mail.
#[derive(Clone, Debug)]
pub struct Mail {
    pub subject: String,
    pub body: String,
}

impl Mail {
    /// The e-mail for `notification` on `node`: what happened in the subject, the message and
    /// the node's facts in the body, so it stands on its own when read on a phone.
    pub fn compose(
        node: &str,
        notification: Notification,
        message: &str,
        state: &str,
        epoch: i64,
    ) -> Mail {
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Mail {
            subject: format!("[Tandem HA] {node}: {}", notification.title()),
            body: format!(
                "{message}\n\n\
                 Node:   {node}\n\
                 State:  {state}, epoch {epoch}\n\
                 Time:   {at}\n\n\
                 See `tandem ha status` and `tandem ha history` on the node, and its \
                 HighAvailability and Notifications logs.\n"
            ),
        }
    }
}

fn relay_endpoint(relay: &str, security: SmtpSecurity) -> (String, u16) {
    let port_default = match security {
        SmtpSecurity::Tls => SMTPS_PORT_DEFAULT,
        SmtpSecurity::Starttls | SmtpSecurity::None => SMTP_PORT_DEFAULT,
    };
    // The configuration refused a relay this parser refuses (the one HOST[:PORT] parser); a
    // stored value that no longer parses is handed to the SMTP client as it is, which reports it.
    match tandem_ha::address::PeerAddress::parse_with_default_port(relay, port_default) {
        Ok(address) => (address.host().to_owned(), address.port()),
        Err(_) => (relay.to_owned(), port_default),
    }
}

/// The CA certificates in `path`, bounded by [`CA_FILE_BYTES_MAX`].
async fn read_ca_file(path: &str) -> Result<Vec<u8>, MailError> {
    let ca_error = |reason: String| MailError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|error| ca_error(error.to_string()))?;
    if !metadata.is_file() || metadata.len() > CA_FILE_BYTES_MAX {
        return Err(ca_error(format!(
            "not a PEM file of CA certificates (a regular file of at most {CA_FILE_BYTES_MAX} \
             bytes)"
        )));
    }
    let pem = tokio::fs::read(path)
        .await
        .map_err(|error| ca_error(error.to_string()))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ca_error(
            "holds no certificate (no -----BEGIN CERTIFICATE----- block); give the PEM file \
             of the CA that signed the relay's certificate"
                .into(),
        ));
    }
    Ok(pem)
}

/// Sends `mail` to every notification address through the configured relay, once, within
/// [`SEND_TIMEOUT_MAX`]. Returns the relay it went through.
pub async fn send(config: &HaConfig, mail: &Mail) -> Result<String, MailError> {
    match tokio::time::timeout(SEND_TIMEOUT_MAX, send_once(config, mail)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(MailError::Relay {
            relay: config.smtp_relay.clone().unwrap_or_default(),
            security: config.smtp_security,
            reason: format!("no answer within {} s", SEND_TIMEOUT_MAX.as_secs()),
            hint: "",
            permanent: false,
        }),
    }
}

async fn send_once(config: &HaConfig, mail: &Mail) -> Result<String, MailError> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    if config.notify_email.is_empty() {
        return Err(MailError::NoAddress);
    }
    let relay = config.smtp_relay.clone().ok_or(MailError::NoRelay)?;
    let (host, port) = relay_endpoint(&relay, config.smtp_security);
    let relay_error = |reason: String, hint: &'static str| MailError::Relay {
        relay: relay.clone(),
        security: config.smtp_security,
        reason,
        hint,
        permanent: false,
    };
    let tls = if config.smtp_security == SmtpSecurity::None {
        Tls::None
    } else {
        let mut parameters = TlsParameters::builder(host.clone());
        if let Some(path) = &config.smtp_ca_file {
            let pem = read_ca_file(path).await?;
            let certificate = Certificate::from_pem(&pem).map_err(|error| MailError::CaFile {
                path: path.clone(),
                reason: format!("{error}; give a PEM file of CA certificates"),
            })?;
            parameters = parameters.add_root_certificate(certificate);
        }
        let parameters = parameters
            .build_rustls()
            .map_err(|error| relay_error(error.to_string(), ""))?;
        match config.smtp_security {
            SmtpSecurity::Tls => Tls::Wrapper(parameters),
            _ => Tls::Required(parameters),
        }
    };
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT))
        .build();
    let address = |field: &'static str, value: &str| {
        value
            .parse::<lettre::message::Mailbox>()
            .map_err(|error| MailError::Address {
                field,
                value: value.to_owned(),
                reason: error.to_string(),
            })
    };
    let mut message = Message::builder()
        .from(address(
            "smtpFrom",
            config.smtp_from.as_deref().unwrap_or(FROM_DEFAULT),
        )?)
        .subject(mail.subject.clone())
        .header(ContentType::TEXT_PLAIN);
    for to in &config.notify_email {
        message = message.to(address("notifyEmail", to)?);
    }
    let message = message
        .body(mail.body.clone())
        .map_err(|error| relay_error(error.to_string(), ""))?;
    transport.send(message).await.map_err(|error| {
        let permanent = error.is_permanent();
        let reason = error.to_string();
        let hint = if reason.to_lowercase().contains("starttls")
            || reason.contains("no TLS")
            || (config.smtp_security == SmtpSecurity::Starttls && reason.contains("not support"))
        {
            "; if this relay offers no STARTTLS and sits on a trusted network, set \
             --smtp-security none"
        } else {
            ""
        };
        MailError::Relay {
            relay: relay.clone(),
            security: config.smtp_security,
            reason,
            hint,
            permanent,
        }
    })?;
    Ok(relay)
}

struct Queued {
    config: HaConfig,
    notification: Notification,
    mail: Mail,
}

/// The sender task's inbox.
#[derive(Clone)]
pub struct Mailer {
    queue: mpsc::Sender<Queued>,
    local: NodeStore,
}

impl Mailer {
    /// Starts the sender task. It ends when every `Mailer` clone is dropped.
    pub fn start(local: NodeStore) -> Mailer {
        let (queue, inbox) = mpsc::channel(MAIL_QUEUE_MAX);
        tokio::spawn(deliver(inbox, local.clone()));
        Mailer { queue, local }
    }

    /// Queues `mail` for the addresses in `config` (the settings when the event happened).
    pub async fn enqueue(&self, config: &HaConfig, notification: Notification, mail: Mail) {
        let queued = Queued {
            config: config.clone(),
            notification,
            mail,
        };
        let why = match self.queue.try_send(queued) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(queued)) => format!(
                "not e-mailed ({MAIL_QUEUE_MAX} e-mails already wait for the relay): {}",
                queued.mail.subject
            ),
            Err(mpsc::error::TrySendError::Closed(queued)) => format!(
                "not e-mailed (the e-mail sender has stopped; see the node log): {}",
                queued.mail.subject
            ),
        };
        record(&self.local, "WARN", &why).await;
    }
}

async fn record(local: &NodeStore, level: &str, line: &str) {
    if let Err(error) = local.log(NOTIFICATIONS_MODULE, level, line).await {
        tracing::warn!(%error, line, "cannot record a notification");
    }
}

async fn deliver(mut inbox: mpsc::Receiver<Queued>, local: NodeStore) {
    while let Some(queued) = inbox.recv().await {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match send(&queued.config, &queued.mail).await {
                Ok(relay) => {
                    tracing::info!(notification = ?queued.notification, %relay, "notification e-mailed");
                    record(
                        &local,
                        "INFO",
                        &format!(
                            "e-mailed to {} through {relay}: {}",
                            queued.config.notify_email.join(", "),
                            queued.mail.subject
                        ),
                    )
                    .await;
                    break;
                }
                Err(error) if attempt < SEND_ATTEMPTS_MAX && !error.is_permanent() => {
                    tracing::warn!(%error, attempt, "notification e-mail failed; retrying");
                    tokio::time::sleep(RETRY_BACKOFF[attempt - 1]).await;
                }
                Err(error) => {
                    tracing::error!(%error, "notification e-mail failed; giving up");
                    record(
                        &local,
                        "ERROR",
                        &format!(
                            "not e-mailed after {attempt} attempt(s) ({error}): {}",
                            queued.mail.subject
                        ),
                    )
                    .await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_port_defaults_by_security() {
        assert_eq!(
            relay_endpoint("mail.example.com", SmtpSecurity::Starttls),
            ("mail.example.com".into(), 25)
        );
        assert_eq!(
            relay_endpoint("mail.example.com", SmtpSecurity::Tls),
            ("mail.example.com".into(), 465)
        );
        assert_eq!(
            relay_endpoint("[::1]:2525", SmtpSecurity::None),
            ("::1".into(), 2525)
        );
    }

    #[tokio::test]
    async fn a_ca_file_must_be_a_small_regular_pem_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for (path, problem) in [
            (empty.display().to_string(), "holds no certificate"),
            ("/dev/zero".to_owned(), "regular file of at most"),
            ("/nonexistent/ca.pem".to_owned(), "No such file"),
        ] {
            let error = read_ca_file(&path).await.unwrap_err();
            assert!(error.is_configuration(), "{error}");
            let text = error.to_string();
            assert!(
                text.starts_with(&format!("smtpCaFile = {path}: ")) && text.contains(problem),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn configuration_errors_are_not_retried_and_say_what_to_set() {
        let config = HaConfig::default();
        let mail = Mail::compose("node-a", Notification::Test, "test", "Active", 1);
        let error = send(&config, &mail).await.unwrap_err();
        assert!(error.is_permanent());
        assert!(error.to_string().contains("--notify-email"), "{error}");
        let config = HaConfig {
            notify_email: vec!["ops@example.com".into()],
            ..HaConfig::default()
        };
        let error = send(&config, &mail).await.unwrap_err();
        assert!(error.is_permanent());
        assert!(error.to_string().contains("--smtp-relay"), "{error}");
    }
}
