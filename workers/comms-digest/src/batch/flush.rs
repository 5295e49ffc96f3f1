//! Flushing: a bucket whose window ended (by the project's clock) or that reached its maximum
//! becomes one send request, idempotency key `batch:<bucket id>`.
//!
//! A round locks due buckets with `FOR UPDATE SKIP LOCKED` (replicas share the work and never
//! flush one bucket at the same time), publishes each bucket's request with a publisher confirm,
//! and marks the buckets flushed in the same transaction. A crash before that commit leaves them
//! due: they are published again with the same key, and the sender records one message per key,
//! so a bucket never produces two messages. The bucket lock also keeps collectors out while its
//! events are read, so an event is never left behind in a bucket that already went out.

use comms_runtime::runtime::rounds::{Rounds, open_publisher, run_rounds};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use comms_runtime::amqp::{self, Outgoing, Publisher};
use comms_runtime::clock::Clock;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("publish: {0}")]
    Publish(#[from] amqp::PublishError),
}

#[derive(sqlx::FromRow)]
struct Due {
    id: Uuid,
    contact_id: Uuid,
    channel: String,
    topic: String,
    event_count: i32,
    max_events: i32,
    template_name: String,
    template_version: Option<i32>,
    kind: String,
    owner: String,
    source: String,
    record_type: String,
    record_id: Uuid,
    opened_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
}

/// The idempotency key of a bucket's message.
pub fn batch_key(batch_id: Uuid) -> String {
    format!("batch:{batch_id}")
}

/// One round at `now`: returns how many buckets were flushed.
pub async fn round(
    runtime: &Runtime,
    publisher: &Publisher,
    now: DateTime<Utc>,
) -> Result<usize, FlushError> {
    let mut tx = runtime.pool.begin().await?;
    let due: Vec<Due> = sqlx::query_as(
        "SELECT id, contact_id, channel, topic, event_count, max_events, template_name,
                template_version, kind, owner, source, record_type, record_id, opened_at, closes_at
         FROM comms.digest_batches
         WHERE state <> 'flushed' AND (state = 'due' OR closes_at <= $1)
         ORDER BY closes_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(i64::from(runtime.settings.digest.flush_batch))
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let exchange = runtime.topology.send_exchange();
    for bucket in &due {
        let events: Vec<serde_json::Value> = sqlx::query_scalar(
            "SELECT payload FROM comms.digest_batch_events WHERE batch_id = $1
             ORDER BY received_at, event_id",
        )
        .bind(bucket.id)
        .fetch_all(&mut *tx)
        .await?;
        if events.is_empty() {
            continue; // nothing to say: marked flushed below without a message
        }
        let mut template = json!({
            "name": bucket.template_name,
            "vars": {
                "topic": bucket.topic,
                "count": events.len(),
                "events": events,
                "window_start": bucket.opened_at.to_rfc3339(),
                "window_end": bucket.closes_at.to_rfc3339(),
            },
        });
        if let Some(version) = bucket.template_version {
            template["version"] = json!(version);
        }
        let request = json!({
            "schema": "comms.send_request.v1",
            "idempotency_key": batch_key(bucket.id),
            "channel": bucket.channel,
            "kind": bucket.kind,
            "recipient": { "contact_id": bucket.contact_id },
            "template": template,
            "record": { "type": bucket.record_type, "id": bucket.record_id },
            "owner": bucket.owner,
            "source": bucket.source,
            "trigger": "digest.batch",
        });
        let body = serde_json::to_vec(&request).unwrap_or_default();
        publisher
            .publish(Outgoing {
                exchange: &exchange,
                routing_key: &format!("send.{}", bucket.channel),
                body: &body,
                message_id: Some(batch_key(bucket.id)),
                ..Outgoing::default()
            })
            .await?;
    }
    let ids: Vec<Uuid> = due.iter().map(|b| b.id).collect();
    sqlx::query(
        "UPDATE comms.digest_batches SET state = 'flushed', flushed_at = $2,
             flush_reason = CASE WHEN event_count >= max_events THEN 'count' ELSE 'window' END
         WHERE id = ANY($1)",
    )
    .bind(&ids)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    for bucket in &due {
        let reason = if bucket.event_count >= bucket.max_events {
            "count"
        } else {
            "window"
        };
        crate::metrics::flushed(reason, now - bucket.closes_at.min(now));
    }
    tracing::debug!(batches = due.len(), "notification batches flushed");
    Ok(due.len())
}

/// Flushes every `digest.flush_interval` until `shutdown`, reconnecting after any failure.
pub async fn run(runtime: Runtime, clock: Arc<dyn Clock>, shutdown: Shutdown) {
    let rounds = Rounds {
        health_check: "digest-flush",
        healthy: "flushing",
        connection_name: "comms-digest",
        interval: runtime.settings.digest.flush_interval,
        full: runtime.settings.digest.flush_batch as usize,
        on_failure: "batch flush failed; the buckets stay due and go out later",
    };
    let looping = runtime.clone();
    run_rounds(looping, shutdown, rounds, |publisher| {
        let (runtime, now) = (runtime.clone(), clock.now());
        async move { round(&runtime, &publisher, now).await }
    })
    .await;
}

/// A confirm-mode publisher on a connection of its own, with the topology declared.
pub async fn connect(runtime: &Runtime) -> Result<(lapin::Connection, Publisher), FlushError> {
    Ok(open_publisher(runtime, "comms-digest").await?)
}
