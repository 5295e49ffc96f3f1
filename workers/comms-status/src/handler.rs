//! What the status worker does with deliveries from `comms.status`: parse the provider's
//! payload, apply each event, and decide what the broker does with each delivery.
//!
//! Deliveries that arrive together are decided as a group: their events are applied in one
//! transaction (`group/`), by the same rules and in the same order as one by one (`store.rs`),
//! and each delivery still gets its own outcome.
//!
//! A callback can outrun the sender: Twilio may post `sent` before the sender has committed the
//! message's provider id. Such a callback is not an error and must not be lost, so it is retried
//! through the broker's delay tiers until `status.unknown_message_retry_for` has passed since the
//! gateway first saw it (the `x-comms-received-at` header; without it, the retry count gives an
//! estimate), and then parked with reason `unknown_message` (in `comms.dead` and
//! `internal.rejected_input`, where an operator can see and replay it). Events of a SendGrid batch
//! that did match are applied at once; when the batch comes back they are recognised as
//! duplicates. Such a callback has usually outrun the sender's commit by milliseconds, so its
//! first `EARLY_RECHECKS` retries wait in the 250 ms tier, not the 1 s one: the callback's
//! `delivered` lands a quarter of a second after the `sent`, not a second.

use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_domain::webhook_body::{self, BodyError};
use comms_runtime::amqp::header_str;
use comms_runtime::runtime::{Handler, Incoming, Outcome};
use comms_runtime::topology::{RETRY_TIERS, Topology};
use sqlx::PgPool;

use crate::event::{Provider, ProviderEvent};
use crate::metrics;
use crate::store::{self, Applied};
use crate::{group, sendgrid, twilio};

/// Header the gateway sets to the provider's name.
pub const PROVIDER_HEADER: &str = "x-comms-provider";
/// Header the gateway sets to the content type the payload came with (the AMQP content type
/// does not survive a retry hop).
pub const CONTENT_TYPE_HEADER: &str = "x-comms-content-type";
/// Header the gateway sets to the RFC 3339 time it received the payload (the first-seen time).
pub const RECEIVED_AT_HEADER: &str = "x-comms-received-at";

/// Retries of a callback for an unknown message that wait only `EARLY_RECHECK_AFTER`, before the
/// runtime's exponential schedule (from 1 s) takes over.
pub const EARLY_RECHECKS: u32 = 2;
/// How long an early recheck waits: the broker's smallest delay tier (250 ms).
pub const EARLY_RECHECK_AFTER: Duration = RETRY_TIERS[0];

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
        match parse(incoming) {
            Ok(parsed) => self.apply_one_by_one(&parsed, incoming.retry_attempt).await,
            Err(rejected) => rejected,
        }
    }

    fn handles_groups(&self) -> bool {
        true
    }

    /// Parses every delivery, then applies the events of all that can be matched by id in one
    /// transaction (`group::apply`). A delivery with an event matched by address only is applied
    /// one event at a time in its place in the order; if the group's transaction fails, each of
    /// its deliveries is applied on its own, so a poison event does not keep failing the others.
    async fn handle_group(&self, messages: &[Incoming]) -> Vec<Outcome> {
        let parsed: Vec<Result<Parsed, Outcome>> = messages.iter().map(parse).collect();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; messages.len()];
        let mut run = Vec::new();
        for (index, delivery) in parsed.iter().enumerate() {
            match delivery {
                Err(rejected) => outcomes[index] = Some(rejected.clone()),
                Ok(delivery) if group::can_take(&delivery.events) => run.push(index),
                Ok(delivery) => {
                    let before = std::mem::take(&mut run);
                    self.apply_group(&parsed, messages, &before, &mut outcomes)
                        .await;
                    let attempt = messages[index].retry_attempt;
                    outcomes[index] = Some(self.apply_one_by_one(delivery, attempt).await);
                }
            }
        }
        self.apply_group(&parsed, messages, &run, &mut outcomes)
            .await;
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| Outcome::retry("status group: delivery left undecided"))
            })
            .collect()
    }
}

/// A delivery's events, parsed.
struct Parsed {
    provider: Provider,
    events: Vec<ProviderEvent>,
    first_seen: DateTime<Utc>,
}

/// Parses a delivery; a payload that is no callback is rejected (`invalid_payload: …`).
fn parse(incoming: &Incoming) -> Result<Parsed, Outcome> {
    let provider = provider_of(incoming);
    // Read as the gateway read it to verify the signature: by the content type it forwarded.
    let content_type = header_str(&incoming.headers, CONTENT_TYPE_HEADER);
    let content_type = content_type.as_deref();
    let body = &incoming.body;
    let parsed = match provider {
        Provider::Twilio => webhook_body::twilio_fields(content_type, body)
            .map_err(unreadable)
            .and_then(|fields| twilio::parse(&fields, body).map_err(invalid))
            .map(|event| vec![event]),
        Provider::Sendgrid => webhook_body::format(content_type, webhook_body::SENDGRID_EVENTS)
            .map_err(unreadable)
            .and_then(|_| sendgrid::parse(body).map_err(invalid)),
    };
    match parsed {
        Ok(mut events) => {
            // A provider's reason goes into the append-only event log: no address may ride along
            // ("550 <dana@example.com> unknown"), docs/privacy.md.
            for event in &mut events {
                event.reason = event.reason.as_deref().map(comms_domain::privacy::redact);
            }
            Ok(Parsed {
                provider,
                events,
                first_seen: first_seen(incoming, Utc::now()),
            })
        }
        Err((code, problem)) => {
            metrics::status()
                .events
                .with_label_values(&[provider.as_str(), "invalid"])
                .inc();
            Err(Outcome::reject(format!(
                "{code}: {}: {problem}",
                provider.as_str()
            )))
        }
    }
}

/// A body its content type does not describe: `unsupported_content_type`, else `invalid_payload`.
fn unreadable(error: BodyError) -> (&'static str, String) {
    let code = match error.code() {
        "unsupported_content_type" => "unsupported_content_type",
        _ => "invalid_payload",
    };
    (code, error.to_string())
}

fn invalid(problem: String) -> (&'static str, String) {
    ("invalid_payload", problem)
}

/// Counts and logs what applying one event did.
fn note(provider: Provider, event: &ProviderEvent, applied: &Applied) {
    metrics::status()
        .events
        .with_label_values(&[provider.as_str(), label(applied)])
        .inc();
    if let Applied::Recorded {
        message_id,
        moved_to,
        life,
    } = applied
    {
        if let Some(state) = moved_to {
            metrics::status()
                .moved_to
                .with_label_values(&[provider.as_str(), state])
                .inc();
            comms_domain::messages::metrics::observe_final(&life.channel, state, life.created_at);
        }
        // The step in the message's own trace, linked to the callback's (docs/operations.md).
        let step = comms_runtime::trace_context::message_step(
            "delivery.status",
            *message_id,
            life.traceparent.as_deref(),
        );
        step.in_scope(|| {
            tracing::info!(message.id = %message_id, provider = provider.as_str(), provider.status = %event.status, message.state = moved_to.unwrap_or("unchanged"), "status applied");
        });
    }
}

impl StatusHandler {
    /// Applies a delivery's events one transaction each ([`store::apply`]).
    async fn apply_one_by_one(&self, parsed: &Parsed, retry_attempt: u32) -> Outcome {
        let mut applied = Vec::with_capacity(parsed.events.len());
        for event in &parsed.events {
            match store::apply(&self.pool, event, parsed.first_seen).await {
                Ok(result) => {
                    note(parsed.provider, event, &result);
                    applied.push(result);
                }
                // Retried when the database was unavailable; rejected when it refused the event.
                Err(error) => return comms_runtime::db_error::outcome(&error),
            }
        }
        self.conclude(parsed, &applied, retry_attempt)
    }

    /// Applies the deliveries at `run` (indexes into `parsed`, all parsed) as one group and
    /// records their outcomes.
    async fn apply_group(
        &self,
        parsed: &[Result<Parsed, Outcome>],
        messages: &[Incoming],
        run: &[usize],
        outcomes: &mut [Option<Outcome>],
    ) {
        let members: Vec<(usize, &Parsed)> = run
            .iter()
            .filter_map(|&index| Some((index, parsed[index].as_ref().ok()?)))
            .collect();
        match members.as_slice() {
            [] => return,
            [(index, delivery)] => {
                let attempt = messages[*index].retry_attempt;
                outcomes[*index] = Some(self.apply_one_by_one(delivery, attempt).await);
                return;
            }
            _ => {}
        }
        let deliveries: Vec<group::Delivery<'_>> = members
            .iter()
            .map(|(_, delivery)| group::Delivery {
                events: &delivery.events,
                first_seen: delivery.first_seen,
            })
            .collect();
        match group::apply(&self.pool, &deliveries).await {
            Ok(results) => {
                for ((index, delivery), applied) in members.iter().zip(results) {
                    for (event, result) in delivery.events.iter().zip(&applied) {
                        note(delivery.provider, event, result);
                    }
                    let attempt = messages[*index].retry_attempt;
                    outcomes[*index] = Some(self.conclude(delivery, &applied, attempt));
                }
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    group.size = members.len(),
                    "status group transaction failed; applying its deliveries one by one"
                );
                for (index, delivery) in members {
                    let attempt = messages[index].retry_attempt;
                    outcomes[index] = Some(self.apply_one_by_one(delivery, attempt).await);
                }
            }
        }
    }

    /// The delivery's outcome once every event was applied: ack, or wait for (or park) the
    /// events whose message is unknown or not yet sent.
    fn conclude(&self, parsed: &Parsed, applied: &[Applied], retry_attempt: u32) -> Outcome {
        let waiting: Vec<(&ProviderEvent, Applied)> = parsed
            .events
            .iter()
            .zip(applied)
            .filter(|(_, result)| matches!(result, Applied::Unknown | Applied::NotYetSent))
            .map(|(event, result)| (event, result.clone()))
            .collect();
        if waiting.is_empty() {
            return Outcome::Ack;
        }
        self.unmatched(
            parsed.provider,
            &parsed.events,
            &waiting,
            parsed.first_seen,
            retry_attempt,
        )
    }

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
        let reason = format!("unknown_message: {what}; waiting for the sender to record it");
        if retry_attempt < EARLY_RECHECKS {
            return Outcome::Retry {
                reason,
                after: Some(EARLY_RECHECK_AFTER),
            };
        }
        Outcome::retry(reason)
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
/// already behind it (the nominal delay of each, as this handler and the runtime schedule them).
pub fn first_seen(incoming: &Incoming, now: DateTime<Utc>) -> DateTime<Utc> {
    if let Some(at) = header_str(&incoming.headers, RECEIVED_AT_HEADER)
        .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
    {
        return at.with_timezone(&Utc);
    }
    let waited: Duration = (1..=incoming.retry_attempt)
        .map(|attempt| {
            if attempt <= EARLY_RECHECKS {
                return EARLY_RECHECK_AFTER;
            }
            let nominal = Duration::from_secs(1u64 << attempt.saturating_sub(1).min(12));
            Topology::retry_tier_floor(nominal)
        })
        .sum();
    now - chrono::Duration::from_std(waited).unwrap_or_default()
}
