//! The outbox relay: `comms.event_outbox` → `comms.events`, at least once, in order per round.
//!
//! A round takes up to `events.relay_batch` unpublished rows with `FOR UPDATE SKIP LOCKED` (so
//! replicas share the work without publishing a row twice at the same time), publishes them all
//! with publisher confirms, and marks them published in the same transaction. A crash or a broker
//! failure before that commit leaves the rows unpublished: they go out again in a later round.
//! Consumers de-duplicate on `event_id`.

use comms_runtime::runtime::rounds::{Rounds, run_rounds};

use comms_runtime::amqp::{self, Outgoing, Publisher};
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use futures_util::future::join_all;
use lapin::types::{AMQPValue, FieldTable};

/// The readiness check of the relay: green once it has a confirmed broker channel.
pub const HEALTH_CHECK: &str = "events-relay";

/// Header naming the event's schema, so a consumer can route without parsing the body.
pub const SCHEMA_HEADER: &str = "x-comms-event-schema";

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("publish: {0}")]
    Publish(#[from] amqp::PublishError),
}

/// Relays until `shutdown`, reconnecting to the broker after any failure.
pub async fn run(runtime: Runtime, shutdown: Shutdown) {
    let rounds = Rounds {
        health_check: HEALTH_CHECK,
        healthy: "publishing",
        connection_name: "comms-events-relay",
        interval: runtime.settings.events.relay_interval,
        // More are waiting after a full round: no pause between full rounds.
        full: runtime.settings.events.relay_batch as usize,
        on_failure: "outbox relay round failed; events stay in the outbox and go out later",
    };
    let looping = runtime.clone();
    run_rounds(looping, shutdown, rounds, |publisher| {
        let runtime = runtime.clone();
        async move { round(&runtime, &publisher).await }
    })
    .await;
}

/// One round: returns how many events were published.
pub async fn round(runtime: &Runtime, publisher: &Publisher) -> Result<usize, RelayError> {
    let mut tx = runtime.pool.begin().await?;
    let rows: Vec<(i64, uuid::Uuid, String, serde_json::Value)> = sqlx::query_as(
        "SELECT id, event_id, routing_key, payload FROM comms.event_outbox
         WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(i64::from(runtime.settings.events.relay_batch))
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let exchange = runtime.topology.events_exchange();
    let bodies: Vec<Vec<u8>> = rows
        .iter()
        .map(|(_, _, _, payload)| serde_json::to_vec(payload).unwrap_or_default())
        .collect();
    let published = join_all(
        rows.iter()
            .zip(&bodies)
            .map(|((_, event_id, key, _), body)| {
                let mut headers = FieldTable::default();
                headers.insert(
                    SCHEMA_HEADER.into(),
                    AMQPValue::LongString(comms_domain::events::EVENT_V1.into()),
                );
                publisher.publish(Outgoing {
                    exchange: &exchange,
                    routing_key: key,
                    body,
                    headers,
                    message_id: Some(event_id.to_string()),
                    content_type: Some("application/json"),
                })
            }),
    )
    .await;
    for result in published {
        result?;
    }
    let ids: Vec<i64> = rows.iter().map(|(id, ..)| *id).collect();
    sqlx::query("UPDATE comms.event_outbox SET published_at = now() WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::debug!(events = rows.len(), "lifecycle events published");
    Ok(rows.len())
}
