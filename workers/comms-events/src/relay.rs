//! The outbox relay: `comms.event_outbox` → `comms.events`, at least once, in order per round.
//!
//! A round takes up to `events.relay_batch` unpublished rows with `FOR UPDATE SKIP LOCKED` (so
//! replicas share the work without publishing a row twice at the same time), publishes them all
//! with publisher confirms, and marks them published in the same transaction. A crash or a broker
//! failure before that commit leaves the rows unpublished: they go out again in a later round.
//! Consumers de-duplicate on `event_id`.

use std::time::Duration;

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
    let interval = runtime.settings.events.relay_interval;
    let mut publisher: Option<(lapin::Connection, Publisher)> = None;
    let mut failures: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let outcome = match publisher.as_ref().filter(|(_, p)| p.is_usable()) {
            Some((_, p)) => round(&runtime, p).await,
            None => match connect(&runtime).await {
                Ok(opened) => {
                    publisher = Some(opened);
                    continue;
                }
                Err(error) => Err(error),
            },
        };
        let wait = match outcome {
            Ok(published) => {
                failures = 0;
                runtime.health.set(HEALTH_CHECK, true, "publishing");
                if published >= runtime.settings.events.relay_batch as usize {
                    continue; // more are waiting: no pause between full rounds
                }
                interval
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                runtime
                    .health
                    .set(HEALTH_CHECK, false, format!("retrying: {error}"));
                tracing::warn!(%error, "outbox relay round failed; events stay in the outbox and go out later");
                publisher = None;
                Duration::from_millis(200 * u64::from(failures.min(50)))
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn connect(runtime: &Runtime) -> Result<(lapin::Connection, Publisher), RelayError> {
    let connection = amqp::connect(&runtime.settings.amqp, "comms-events-relay").await?;
    let publisher = Publisher::open(&connection).await?;
    runtime.topology.declare(publisher.channel()).await?;
    Ok((connection, publisher))
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
