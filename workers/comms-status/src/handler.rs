//! What the status worker does with one delivery from `comms.status`: parse the provider's
//! payload, apply each event, and decide what the broker does with the delivery.
//!
//! A callback can outrun the sender: Twilio may post `sent` before the sender has committed the
//! message's provider id. Such a callback is not an error and must not be lost, so it is retried
//! through the broker's delay tiers until `status.unknown_message_retry_for` has passed since the
//! gateway first saw it (the `x-comms-received-at` header; without it, the retry count gives an
//! estimate), and then parked with reason `unknown_message` (in `comms.dead` and
//! `internal.rejected_input`, where an operator can see and replay it). Events of a batch that
//! did match are applied at once; when the batch comes back they are recognised as duplicates.

use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_shared::amqp::header_str;
use comms_shared::runtime::{Handler, Incoming, Outcome};
use comms_shared::topology::Topology;
use sqlx::PgPool;

use crate::event::{Provider, ProviderEvent};
use crate::metrics;
use crate::store::{self, Applied};
use crate::{sendgrid, twilio};

/// Header the gateway sets to the provider's name.
pub const PROVIDER_HEADER: &str = "x-comms-provider";
/// Header the gateway sets to the RFC 3339 time it received the payload (the first-seen time).
pub const RECEIVED_AT_HEADER: &str = "x-comms-received-at";

/// The handler of `comms.status`.
pub struct StatusHandler {
    pub pool: PgPool,
    /// How long a callback for an unknown message is retried before it is parked.
    pub unknown_retry_for: Duration,
    /// The runtime's retry budget; an unknown message is parked before it runs out, so its
    /// reason stays `unknown_message`.
    pub max_retries: u32,
}

impl Handler for StatusHandler {
    async fn handle(&self, incoming: &Incoming) -> Outcome {
        let provider = provider_of(incoming);
        let parsed = match provider {
            Provider::Twilio => twilio::parse(&incoming.body).map(|event| vec![event]),
            Provider::Sendgrid => sendgrid::parse(&incoming.body),
        };
        let events = match parsed {
            Ok(events) => events,
            Err(problem) => {
                metrics::status()
                    .events
                    .with_label_values(&[provider.as_str(), "invalid"])
                    .inc();
                return Outcome::reject(format!(
                    "invalid_payload: {}: {problem}",
                    provider.as_str()
                ));
            }
        };
        let first_seen = first_seen(incoming, Utc::now());
        let mut waiting = Vec::new();
        for event in &events {
            match store::apply(&self.pool, event, first_seen).await {
                Ok(applied) => {
                    let label = label(&applied);
                    metrics::status()
                        .events
                        .with_label_values(&[provider.as_str(), label])
                        .inc();
                    if let Applied::Recorded {
                        message_id,
                        moved_to,
                    } = &applied
                    {
                        tracing::info!(message.id = %message_id, provider = provider.as_str(), provider.status = %event.status, message.state = moved_to.unwrap_or("unchanged"), "status applied");
                    }
                    if matches!(applied, Applied::Unknown | Applied::NotYetSent) {
                        waiting.push((event, applied));
                    }
                }
                Err(error) => return Outcome::retry(format!("database unavailable: {error}")),
            }
        }
        if waiting.is_empty() {
            return Outcome::Ack;
        }
        self.unmatched(
            provider,
            &events,
            &waiting,
            first_seen,
            incoming.retry_attempt,
        )
    }
}

impl StatusHandler {
    fn unmatched(
        &self,
        provider: Provider,
        events: &[ProviderEvent],
        waiting: &[(&ProviderEvent, Applied)],
        first_seen: DateTime<Utc>,
        retry_attempt: u32,
    ) -> Outcome {
        let what = match (provider, waiting.first()) {
            (Provider::Twilio, Some((event, Applied::NotYetSent))) => format!(
                "twilio {} for {} arrived before the sender recorded the dispatch",
                event.status,
                event.lookup.provider_message_id.as_deref().unwrap_or("?")
            ),
            (Provider::Twilio, Some((event, _))) => format!(
                "no message has twilio MessageSid {}",
                event.lookup.provider_message_id.as_deref().unwrap_or("?")
            ),
            _ => format!(
                "{} of {} sendgrid events match no sent message",
                waiting.len(),
                events.len()
            ),
        };
        let waited = (Utc::now() - first_seen).to_std().unwrap_or_default();
        let out_of_retries = retry_attempt.saturating_add(1) > self.max_retries;
        if waited >= self.unknown_retry_for || out_of_retries {
            metrics::status()
                .parked
                .with_label_values(&[provider.as_str()])
                .inc();
            tracing::warn!(
                provider = provider.as_str(),
                waited_s = waited.as_secs(),
                "status callback for an unknown message parked"
            );
            return Outcome::reject(format!(
                "unknown_message: {what} (waited {}s)",
                waited.as_secs()
            ));
        }
        Outcome::retry(format!(
            "unknown_message: {what}; waiting for the sender to record it"
        ))
    }
}

fn label(applied: &Applied) -> &'static str {
    match applied {
        Applied::Recorded {
            moved_to: Some(_), ..
        } => "applied",
        Applied::Recorded { moved_to: None, .. } => "recorded",
        Applied::Duplicate => "duplicate",
        Applied::Unknown => "unknown",
        Applied::NotYetSent => "not_yet_sent",
    }
}

/// The provider: the gateway's header, else the routing key (`status.<provider>`; retried
/// deliveries come back with a tier key instead), else the payload's shape.
fn provider_of(incoming: &Incoming) -> Provider {
    let named = header_str(&incoming.headers, PROVIDER_HEADER).or_else(|| {
        incoming
            .routing_key
            .strip_prefix("status.")
            .map(str::to_string)
    });
    match named.as_deref() {
        Some("twilio") => Provider::Twilio,
        Some("sendgrid") => Provider::Sendgrid,
        _ if incoming.body.trim_ascii_start().starts_with(b"[") => Provider::Sendgrid,
        _ => Provider::Twilio,
    }
}

/// When the gateway first saw this payload; without its header, an estimate from the retries
/// already behind it (the nominal delay of each, as the runtime schedules them).
pub fn first_seen(incoming: &Incoming, now: DateTime<Utc>) -> DateTime<Utc> {
    if let Some(at) = header_str(&incoming.headers, RECEIVED_AT_HEADER)
        .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
    {
        return at.with_timezone(&Utc);
    }
    let waited: Duration = (1..=incoming.retry_attempt)
        .map(|attempt| {
            let nominal = Duration::from_secs(1u64 << attempt.saturating_sub(1).min(12));
            Topology::retry_tier_floor(nominal)
        })
        .sum();
    now - chrono::Duration::from_std(waited).unwrap_or_default()
}
