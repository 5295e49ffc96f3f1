//! Moving what waits in `comms.dead` into `internal.rejected_input`, so one table lists every
//! dead letter.
//!
//! A copy the consumer runtime made (it carries `x-comms-origin-queue` and no broker death
//! record) already has its row — the runtime writes the row before it publishes the copy — and is
//! simply acked. A dead letter the broker made (a message that reached its queue's delivery
//! limit, `x-first-death-queue`) is recorded with its origin queue and reason, then acked. Ack
//! after commit: a crash in between leaves the message in the queue, and the next collect finds
//! the row already there (`dead_key`, a hash of its headers and body) and acks it.

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::act::DeadError;
use comms_runtime::amqp::Publisher;
use comms_runtime::runtime::{ORIGIN_HEADER, headers_to_json};
use comms_runtime::topology::Topology;

/// Most messages one collect takes from the queue (the rest wait for the next command).
pub const COLLECT_MAX: usize = 10_000;

fn text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// What one [`collect`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Messages taken from `comms.dead` (and acked).
    pub taken: usize,
    /// Of those, the broker's own dead letters, recorded now.
    pub recorded: usize,
}

/// Takes up to `max` messages from `comms.dead`. Fewer than `max` taken means the queue was
/// empty when it stopped.
pub async fn collect(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
    max: usize,
) -> Result<Collected, DeadError> {
    let queue = topology.dead_queue();
    let channel = publisher.channel();
    let mut done = Collected::default();
    for _ in 0..max {
        let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let first_death = text(&headers, "x-first-death-queue");
        if first_death.is_none() && text(&headers, ORIGIN_HEADER).is_some() {
            delivery.acker.ack(BasicAckOptions::default()).await?;
            done.taken += 1;
            continue;
        }
        let origin = first_death.unwrap_or_else(|| queue.clone());
        let why = text(&headers, "x-first-death-reason").unwrap_or_else(|| "unknown".into());
        let reason = format!(
            "dead_lettered_by_broker: {why} (the broker gave up on it after repeated failed deliveries)"
        );
        let mut hasher = Sha256::new();
        hasher.update(format!("{:?}", headers.inner()).as_bytes());
        hasher.update(&delivery.data);
        let key: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let stored = sqlx::query(
            "INSERT INTO internal.rejected_input (queue, routing_key, reason, payload, headers, origin, dead_key)
             VALUES ($1, $2, $3, $4, $5, 'broker', $6) ON CONFLICT (dead_key) DO NOTHING",
        )
        .bind(&origin)
        .bind(delivery.routing_key.as_str())
        .bind(&reason)
        .bind(&delivery.data)
        .bind(headers_to_json(&headers))
        .bind(&key)
        .execute(pool)
        .await;
        match stored {
            Ok(stored) => {
                done.recorded += usize::try_from(stored.rows_affected()).unwrap_or(0);
                delivery.acker.ack(BasicAckOptions::default()).await?;
                done.taken += 1;
            }
            Err(error) => {
                let _ = delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await;
                return Err(error.into());
            }
        }
    }
    Ok(done)
}
