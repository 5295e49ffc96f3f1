//! The providers a message can leave through, behind one call: [`Providers::dispatch`].
//!
//! Each provider turns its API's answer into a [`Dispatch`] that says what the sender must do
//! next: record the provider id, retry (with the provider's `Retry-After` when it gave one), or
//! fail permanently with the provider's reason. Base URLs come from settings, so the sandbox and
//! the real services are one setting apart.

mod portal;
mod sendgrid;
mod smtp;
mod twilio;

use std::time::Duration;

use comms_runtime::settings::Settings;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

/// What the provider said about one dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// Accepted; the provider's id for later status callbacks.
    Sent {
        provider: &'static str,
        provider_message_id: String,
    },
    /// Try again later. `maybe_sent` when the request may have reached the provider before the
    /// failure (a timeout after sending): a retry can then produce a duplicate.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
        maybe_sent: bool,
    },
    /// Never retry: the provider refused this message for good.
    Permanent {
        reason: String,
        /// The recipient unsubscribed at the provider (Twilio 21610): record the opt-out.
        opted_out: bool,
    },
}

/// The content and addressing of one dispatch.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub message_id: Uuid,
    pub channel: String,
    pub kind: String,
    pub contact_id: Uuid,
    pub client_id: Option<Uuid>,
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
}

/// Why the providers could not be set up from settings.
#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("SMTP relay: {0}")]
    Smtp(String),
}

/// Every provider the sender can use, with their HTTP client.
#[derive(Clone)]
pub struct Providers {
    http: reqwest::Client,
    smtp: Option<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
    settings: std::sync::Arc<Settings>,
    pool: PgPool,
}

impl Providers {
    pub fn new(
        settings: std::sync::Arc<Settings>,
        pool: PgPool,
    ) -> Result<Self, ProviderSetupError> {
        let http = reqwest::Client::builder()
            .timeout(settings.sender.provider_timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let smtp = match settings.providers.email {
            comms_runtime::settings::EmailTransport::Smtp => Some(
                smtp::transport(&settings.providers.smtp, settings.sender.provider_timeout)
                    .map_err(ProviderSetupError::Smtp)?,
            ),
            comms_runtime::settings::EmailTransport::Sendgrid => None,
        };
        Ok(Self {
            http,
            smtp,
            settings,
            pool,
        })
    }

    /// The account a channel's rate limit is kept for.
    pub fn account(&self, channel: &str) -> String {
        match channel {
            "sms" => format!("twilio:{}", self.settings.providers.twilio.account_sid),
            "email" if self.smtp.is_some() => "smtp".into(),
            "email" => "sendgrid".into(),
            _ => "portal".into(),
        }
    }

    /// Calls the channel's provider, in a span of its own (a child of the message's): its
    /// context is what a Twilio status callback carries back (see `twilio::callback_url`).
    /// A failure's reason goes into the append-only event log, so any address the provider
    /// echoed in it is redacted first (docs/privacy.md).
    pub async fn dispatch(&self, message: &Outbound) -> Dispatch {
        let span = tracing::info_span!(
            "provider.call",
            otel.kind = "client",
            message.id = %message.message_id,
            channel = %message.channel,
        );
        match self.call(message).instrument(span).await {
            Dispatch::Transient {
                reason,
                retry_after,
                maybe_sent,
            } => Dispatch::Transient {
                reason: redact(&reason, &message.to),
                retry_after,
                maybe_sent,
            },
            Dispatch::Permanent { reason, opted_out } => Dispatch::Permanent {
                reason: redact(&reason, &message.to),
                opted_out,
            },
            sent => sent,
        }
    }

    async fn call(&self, message: &Outbound) -> Dispatch {
        match message.channel.as_str() {
            "sms" => twilio::send(&self.http, &self.settings.providers.twilio, message).await,
            "email" => match &self.smtp {
                Some(relay) => smtp::send(relay, &self.settings, message).await,
                None => sendgrid::send(&self.http, &self.settings, message).await,
            },
            "portal" => portal::publish(&self.pool, message).await,
            other => Dispatch::Permanent {
                reason: format!("no provider for channel {other}"),
                opted_out: false,
            },
        }
    }
}

/// `reason` without the recipient's address, in whatever form a provider wrote it.
fn redact(reason: &str, to: &str) -> String {
    let reason = if to.len() >= 5 {
        reason.replace(to, "[address]")
    } else {
        reason.to_string()
    };
    comms_domain::privacy::redact(&reason)
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    wait.to_std().ok()
}

/// Classifies a transport error: a timeout may have reached the provider, a refused connection
/// did not.
fn transport_failure(provider: &str, error: &reqwest::Error) -> Dispatch {
    let maybe_sent = !error.is_connect() && !error.is_builder();
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    Dispatch::Transient {
        reason: format!("{provider} {what}"),
        retry_after: None,
        maybe_sent,
    }
}

/// 429 and 5xx are worth retrying; so are 401/403 (a credentials problem an operator fixes
/// while the message waits, rather than a reason to lose it).
fn is_transient(status: reqwest::StatusCode) -> bool {
    status.as_u16() == 429
        || status.is_server_error()
        || status.as_u16() == 401
        || status.as_u16() == 403
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, "soon".parse().expect("header"));
        assert_eq!(retry_after(&headers), None);
    }
}
