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
/// The sender when `smtpFrom` is not set.
pub const FROM_DEFAULT: &str = "tandem@localhost";
/// The relay's port when `smtpRelay` names none.
pub const SMTP_PORT_DEFAULT: u16 = 25;

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
    },
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

fn relay_endpoint(relay: &str) -> (String, u16) {
    // Validated by the configuration (`check_endpoint`): HOST, HOST:PORT or [V6]:PORT.
    match relay.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.starts_with('[') => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port.parse().unwrap_or(SMTP_PORT_DEFAULT),
        ),
        _ => (relay.to_owned(), SMTP_PORT_DEFAULT),
    }
}

/// Sends `mail` to every notification address through the configured relay, once. Returns the
/// relay it went through.
pub async fn send(config: &HaConfig, mail: &Mail) -> Result<String, MailError> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    if config.notify_email.is_empty() {
        return Err(MailError::NoAddress);
    }
    let relay = config.smtp_relay.clone().ok_or(MailError::NoRelay)?;
    let (host, port) = relay_endpoint(&relay);
    let relay_error = |reason: String, hint: &'static str| MailError::Relay {
        relay: relay.clone(),
        security: config.smtp_security,
        reason,
        hint,
    };
    let tls = if config.smtp_security == SmtpSecurity::None {
        Tls::None
    } else {
        let mut parameters = TlsParameters::builder(host.clone());
        if let Some(path) = &config.smtp_ca_file {
            let ca_error = |reason: String| MailError::CaFile {
                path: path.clone(),
                reason,
            };
            let pem = tokio::fs::read(path)
                .await
                .map_err(|error| ca_error(error.to_string()))?;
            let certificate = Certificate::from_pem(&pem).map_err(|error| {
                ca_error(format!("{error}; give a PEM file of CA certificates"))
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
        relay_error(reason, hint)
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
        if let Err(mpsc::error::TrySendError::Full(queued)) = self.queue.try_send(queued) {
            record(
                &self.local,
                "WARN",
                &format!(
                    "not e-mailed ({} waiting for the relay): {}",
                    MAIL_QUEUE_MAX, queued.mail.subject
                ),
            )
            .await;
        }
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
                Err(error) if attempt < SEND_ATTEMPTS_MAX => {
                    tracing::warn!(%error, attempt, "notification e-mail failed; retrying");
                    tokio::time::sleep(RETRY_BACKOFF[attempt - 1]).await;
                }
                Err(error) => {
                    tracing::error!(%error, "notification e-mail failed; giving up");
                    record(
                        &local,
                        "ERROR",
                        &format!(
                            "not e-mailed after {SEND_ATTEMPTS_MAX} attempts ({error}): {}",
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
