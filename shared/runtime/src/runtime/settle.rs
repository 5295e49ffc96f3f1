//! Turning a handler's [`Outcome`] into broker and database effects.
//!
//! Order matters for "nothing is lost": a retry or dead letter is published (and confirmed)
//! and a rejection recorded before the original delivery is acked. If any step fails the
//! delivery is returned to the queue instead, and the broker's delivery limit is the last guard.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};

use super::{
    Incoming, ORIGIN_HEADER, Outcome, REASON_HEADER, RETRY_HEADER, ROUTING_KEY_HEADER, Runtime,
};
use crate::amqp::{Outgoing, PublishError, Publisher};
use crate::topology::Topology;

/// The delay before broker retry number `attempt` (1-based): exponential from 1 s, doubling,
/// capped at one hour, with jitter so a burst of failures does not come back as a burst.
pub fn retry_delay(attempt: u32) -> Duration {
    let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(3600))
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(index.saturating_add(1))
        .build()
        .nth(index)
        .unwrap_or(Duration::from_secs(3600))
}

#[derive(Debug, thiserror::Error)]
pub(super) enum SettleError {
    #[error("could not publish: {0}")]
    Publish(#[from] PublishError),
    #[error("could not record the rejection: {0}")]
    Record(#[from] sqlx::Error),
    #[error("could not ack: {0}")]
    Ack(#[from] lapin::Error),
}

/// Applies `outcome`; returns the outcome label for metrics.
pub(super) async fn settle(
    runtime: &Runtime,
    publisher: &Publisher,
    acker: &Acker,
    message: &Incoming,
    outcome: Outcome,
) -> &'static str {
    let result = match outcome {
        Outcome::Ack => acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| "ack")
            .map_err(SettleError::from),
        Outcome::Retry { reason, after } => {
            let attempt = message.retry_attempt + 1;
            if attempt > runtime.settings.consumer.max_retries {
                let reason = format!("retries exhausted after {} attempts: {reason}", attempt - 1);
                reject(runtime, publisher, acker, message, &reason).await
            } else {
                // A provider's Retry-After is a minimum; our own schedule is a target.
                let tier = match after {
                    Some(minimum) => Topology::retry_tier(minimum),
                    None => Topology::retry_tier_floor(retry_delay(attempt)),
                };
                let settled =
                    retry(runtime, publisher, acker, message, attempt, &reason, tier).await;
                // A retry is a failure the fleet recovers from: warn, as the log policy says.
                if settled.is_ok() {
                    tracing::warn!(retry.attempt = attempt, retry.tier = %Topology::tier_label(tier), %reason, "retry scheduled");
                }
                settled
            }
        }
        Outcome::Reject { reason } => reject(runtime, publisher, acker, message, &reason).await,
        Outcome::Defer { after, reason } => {
            let attempt = message.retry_attempt;
            let tier = Topology::retry_tier_floor(after);
            let settled = retry(runtime, publisher, acker, message, attempt, &reason, tier).await;
            // Not a failure (quiet hours, `send_after`): a lifecycle line.
            if settled.is_ok() {
                tracing::info!(defer.tier = %Topology::tier_label(tier), %reason, "deferred");
            }
            settled.map(|_| "defer")
        }
    };
    match result {
        Ok(label) => label,
        Err(error) => {
            tracing::warn!(%error, "could not settle the message; returning it to the queue");
            let _ = acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
            "requeue"
        }
    }
}

async fn retry(
    runtime: &Runtime,
    publisher: &Publisher,
    acker: &Acker,
    message: &Incoming,
    attempt: u32,
    reason: &str,
    tier: Duration,
) -> Result<&'static str, SettleError> {
    let mut headers = message.headers.clone();
    // The retry counter survives the hop; a deferral passes the current count through unchanged.
    headers.insert(RETRY_HEADER.into(), AMQPValue::LongLongInt(attempt.into()));
    headers.insert(REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
    // The tier hands the message back under its own routing key; the publisher's goes along.
    headers.insert(
        ROUTING_KEY_HEADER.into(),
        AMQPValue::LongString(message.routing_key.as_str().into()),
    );
    let exchange = runtime.topology.retry_exchange();
    let routing_key = Topology::retry_routing_key(tier, &message.queue);
    publisher
        .publish(Outgoing {
            exchange: &exchange,
            routing_key: &routing_key,
            body: &message.body,
            headers,
            message_id: message.message_id.clone(),
            content_type: None,
        })
        .await?;
    acker.ack(BasicAckOptions::default()).await?;
    Ok("retry")
}

async fn reject(
    runtime: &Runtime,
    publisher: &Publisher,
    acker: &Acker,
    message: &Incoming,
    reason: &str,
) -> Result<&'static str, SettleError> {
    let headers_json = headers_to_json(&message.headers);
    sqlx::query(
        "INSERT INTO internal.rejected_input (queue, routing_key, reason, payload, headers)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&message.queue)
    .bind(&message.routing_key)
    .bind(reason)
    .bind(&message.body)
    .bind(headers_json)
    .execute(&runtime.pool)
    .await?;
    let mut headers = message.headers.clone();
    headers.insert(REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
    headers.insert(
        ORIGIN_HEADER.into(),
        AMQPValue::LongString(message.queue.as_str().into()),
    );
    let exchange = runtime.topology.dead_exchange();
    publisher
        .publish(Outgoing {
            exchange: &exchange,
            routing_key: &message.routing_key,
            body: &message.body,
            headers,
            message_id: message.message_id.clone(),
            content_type: None,
        })
        .await?;
    acker.ack(BasicAckOptions::default()).await?;
    tracing::warn!(%reason, "message rejected and parked in the dead-letter queue");
    Ok("reject")
}

/// Headers as JSON for the rejected table (string and integer values; others by debug form).
pub fn headers_to_json(headers: &FieldTable) -> serde_json::Value {
    let map = headers
        .inner()
        .iter()
        .map(|(k, v)| {
            let value = match v {
                AMQPValue::LongString(s) => serde_json::Value::String(s.to_string()),
                AMQPValue::ShortString(s) => serde_json::Value::String(s.to_string()),
                AMQPValue::LongLongInt(n) => serde_json::Value::from(*n),
                AMQPValue::LongInt(n) => serde_json::Value::from(*n),
                other => serde_json::Value::String(format!("{other:?}")),
            };
            (k.to_string(), value)
        })
        .collect();
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_are_capped() {
        for _ in 0..20 {
            let first = retry_delay(1);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2));
            let fifth = retry_delay(5);
            assert!(fifth >= Duration::from_secs(16) && fifth <= Duration::from_secs(32));
            assert!(retry_delay(40) <= Duration::from_secs(7200));
        }
    }
}
