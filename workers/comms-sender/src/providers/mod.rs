//! The providers a message can leave through, behind one call: [`Providers::dispatch`] (or
//! [`Providers::route`] then [`Providers::dispatch_via`], when the caller records the route).
//!
//! Each provider turns its API's answer into a [`Dispatch`] that says what the sender must do
//! next: record the provider id, retry (with the provider's `Retry-After` when it gave one), or
//! fail permanently with the provider's reason; and into a [`Health`] that says what the answer
//! means for the provider itself, which failover (`crate::failover`, `route.rs`) acts on. Base
//! URLs come from settings, so the sandbox and the real services are one setting apart.

mod portal;
mod route;
mod sendgrid;
mod smtp;
mod twilio;

use std::sync::Arc;
use std::time::Duration;

pub use route::{Route, Routed};

use crate::failover::{Failover, Health};
use comms_runtime::clock::Clock;
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
    #[error("{0}")]
    Order(String),
}

/// Every provider the sender can use, with their HTTP client and the failover state.
#[derive(Clone)]
pub struct Providers {
    http: reqwest::Client,
    smtp: Option<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
    settings: Arc<Settings>,
    pool: PgPool,
    failover: Arc<Failover>,
}

impl Providers {
    pub fn new(
        settings: Arc<Settings>,
        pool: PgPool,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ProviderSetupError> {
        let http = reqwest::Client::builder()
            .timeout(settings.sender.provider_timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let sms = settings
            .providers
            .sms_providers()
            .map_err(ProviderSetupError::Order)?;
        let email = settings
            .providers
            .email_providers()
            .map_err(ProviderSetupError::Order)?;
        let smtp = if email.contains(&"smtp") {
            Some(
                smtp::transport(&settings.providers.smtp, settings.sender.provider_timeout)
                    .map_err(ProviderSetupError::Smtp)?,
            )
        } else {
            None
        };
        let failover = Arc::new(Failover::new(
            clock,
            &[("sms", sms), ("email", email)],
            settings.pause.breaker_failures,
            settings.providers.failback_after,
        ));
        route::publish_gauges(&failover);
        Ok(Self {
            http,
            smtp,
            settings,
            pool,
            failover,
        })
    }

    /// The failover state (the circuit breaker asks it whether every provider is failing).
    pub fn failover(&self) -> Arc<Failover> {
        self.failover.clone()
    }

    /// The account a channel's rate limit is kept for: that of the provider taking its traffic.
    pub fn account(&self, channel: &str) -> String {
        match self.failover.current(channel) {
            Some(name) => self.account_of(name),
            None => "portal".into(),
        }
    }

    /// The rate-limit account of provider `name` (two Twilio names on one account share it).
    pub fn account_of(&self, name: &str) -> String {
        match self.settings.providers.twilio_account(name) {
            Some(twilio) => format!("twilio:{}", twilio.account_sid),
            None => name.to_string(),
        }
    }

    /// Routes and sends a new `message` (the route is decided here, unpinned: the group path);
    /// returns the provider name it went to with the answer.
    pub async fn dispatch(&self, message: &Outbound) -> (&'static str, Dispatch) {
        match self.route(&message.channel, None, false) {
            Routed::To(route) => (route.name, self.dispatch_via(&route, message).await),
            // Unreachable without a pin; answered like a refused connection, to be retried.
            Routed::Away { provider } => (
                "none",
                Dispatch::Transient {
                    reason: format!("{provider} is failing"),
                    retry_after: None,
                    maybe_sent: false,
                },
            ),
        }
    }

    /// Calls provider `name` of the message's channel, in a span of its own (a child of the
    /// message's): its context is what a Twilio status callback carries back (see
    /// `twilio::callback_url`). A failure's reason goes into the append-only event log, so any
    /// address the provider echoed in it is redacted first (docs/privacy.md).
    async fn call_redacted(&self, name: &str, message: &Outbound) -> (Dispatch, Health) {
        let span = tracing::info_span!(
            "provider.call",
            otel.kind = "client",
            message.id = %message.message_id,
            channel = %message.channel,
            provider = name,
        );
        let (dispatch, health) = self.call(name, message).instrument(span).await;
        let dispatch = match dispatch {
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
        };
        (dispatch, health)
    }

    async fn call(&self, name: &str, message: &Outbound) -> (Dispatch, Health) {
        let providers = &self.settings.providers;
        match (message.channel.as_str(), name) {
            ("sms", _) => match providers.twilio_account(name) {
                Some(account) => twilio::send(&self.http, account, message).await,
                None => unknown(name),
            },
            ("email", "smtp") => match &self.smtp {
                Some(relay) => smtp::send(relay, &self.settings, message).await,
                None => unknown(name),
            },
            ("email", "sendgrid") => sendgrid::send(&self.http, &self.settings, message).await,
            ("portal", _) => (portal::publish(&self.pool, message).await, Health::Up),
            (other, _) => (
                Dispatch::Permanent {
                    reason: format!("no provider for channel {other}"),
                    opted_out: false,
                },
                Health::Up,
            ),
        }
    }
}

/// A provider name settings validation let through but this build cannot call.
fn unknown(name: &str) -> (Dispatch, Health) {
    (
        Dispatch::Transient {
            reason: format!("provider {name} is not configured"),
            retry_after: None,
            maybe_sent: false,
        },
        Health::Failing,
    )
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
/// did not. A failure before anything was sent is failover-class; one after it only counts
/// toward the breaker (the message itself stays with this provider: docs/reliability.md).
fn transport_failure(provider: &str, error: &reqwest::Error) -> (Dispatch, Health) {
    let maybe_sent = !error.is_connect() && !error.is_builder();
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    let dispatch = Dispatch::Transient {
        reason: format!("{provider} {what}"),
        retry_after: None,
        maybe_sent,
    };
    let health = if maybe_sent {
        Health::Degraded
    } else {
        Health::Failing
    };
    (dispatch, health)
}

/// 429 and 5xx are worth retrying; so are 401/403 (a credentials problem an operator fixes
/// while the message waits, rather than a reason to lose it).
fn is_transient(status: reqwest::StatusCode) -> bool {
    status.as_u16() == 429 || is_failover_class(status)
}

/// 5xx and 401/403 say the provider (or our account there) is failing: the next message goes
/// to the next provider. A 429 only counts toward the breaker; other 4xx refuse one message.
fn health_of(status: reqwest::StatusCode) -> Health {
    if is_failover_class(status) {
        Health::Failing
    } else if status.as_u16() == 429 {
        Health::Degraded
    } else {
        Health::Up
    }
}

fn is_failover_class(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status.as_u16() == 401 || status.as_u16() == 403
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

    #[test]
    fn answers_are_sorted_by_what_they_say_about_the_provider() {
        use reqwest::StatusCode;
        for failing in [500, 502, 503, 401, 403] {
            let status = StatusCode::from_u16(failing).expect("status");
            assert_eq!(health_of(status), Health::Failing, "{failing}");
            assert!(is_transient(status), "{failing} is retried");
        }
        assert_eq!(health_of(StatusCode::TOO_MANY_REQUESTS), Health::Degraded);
        assert!(is_transient(StatusCode::TOO_MANY_REQUESTS));
        // A refusal of one message says the provider works.
        for fine in [200, 201, 400, 404, 422] {
            let status = StatusCode::from_u16(fine).expect("status");
            assert_eq!(health_of(status), Health::Up, "{fine}");
        }
    }
}
