//! Releasing held messages after a pause ends.
//!
//! Held messages keep their original request; releasing publishes it again to `comms.send` (with
//! confirms) in the order the messages were created, then records the release. Publishing first
//! means a crash in between leads to a second delivery, which the sender ignores, never to a
//! message stuck without a queue entry. One process at a time releases (an advisory lock), so
//! order is kept across the fleet; the sender keeps per-recipient order for released messages.
//! The move `held → received` with its `released` event is the ledger's
//! ([`crate::messages::ledger::moves::release_held`]).

use sqlx::PgPool;
use uuid::Uuid;

use comms_runtime::amqp::{Outgoing, PublishError, Publisher};
use comms_runtime::topology::Topology;

use super::metrics::metrics;

/// Header on a released request: the sender looks its recorded message up and decides it with
/// new requests in one group. A hint only — the message's recorded state decides everything.
pub const RELEASED_HEADER: &str = "x-comms-released";

/// "An older released message to the same address on the same channel is still on its way", of
/// the message `m` in the statement around it: released messages keep their creation order per
/// recipient, so the sender dispatches a released message only when this is false. It is the
/// predicate of `messages_release_order_idx` (migration 0030), which answers it without reading
/// the recipient's messages already sent; keep the two together.
pub const OLDER_RELEASE_PENDING: &str = "EXISTS (SELECT 1 FROM comms.messages o
     WHERE o.contact_id = m.contact_id AND o.channel = m.channel
       AND o.held_by_pause IS NOT NULL
       AND o.delivery_state IN ('held', 'received', 'retrying', 'deferred', 'sending')
       AND (o.created_at, o.id) < (m.created_at, m.id))";

/// Held messages published and moved per statement while releasing.
const RELEASE_BATCH: i64 = 1000;

/// Advisory lock key held while releasing ("comms-rel" in ASCII).
const RELEASE_LOCK: i64 = 0x636f_6d6d_732d_7265;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("publishing a released message: {0}")]
    Publish(#[from] PublishError),
}

#[derive(sqlx::FromRow)]
struct Held {
    id: Uuid,
    created_at: chrono::DateTime<chrono::Utc>,
    idempotency_key: String,
    channel: String,
    request: serde_json::Value,
    traceparent: Option<String>,
}

/// Where a run of release batches got to: the creation time and id of the last message it
/// released. The next batch of the run starts after it.
pub type ReleasedUpTo = (chrono::DateTime<chrono::Utc>, Uuid);

/// Releases up to `batch` held messages no pause covers any more, oldest first, after `after`
/// (the previous batch of the same run; `None` from the start). Returns how many were released
/// (0 when another process holds the release lock) and the last of them.
///
/// Why `after`: a message released leaves its entry in the held index until the next vacuum, so
/// a batch that started from the oldest held message stepped over every entry released before it
/// in the run whenever those entries could not yet be marked dead (45 600 buffers for 50 000 such
/// entries, against 981 starting after them). Starting after the last one released reads only
/// what is left. A message skipped before the position (a pause still covers it) or held again
/// meanwhile is found by the next tick's run, which starts from the oldest.
pub async fn release_held(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
    batch: i64,
    after: Option<ReleasedUpTo>,
) -> Result<(usize, Option<ReleasedUpTo>), ReleaseError> {
    let mut lock_conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(RELEASE_LOCK)
        .fetch_one(&mut *lock_conn)
        .await?;
    if !locked {
        return Ok((0, None));
    }
    let result = release_batch(pool, publisher, topology, batch, after).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(RELEASE_LOCK)
        .execute(&mut *lock_conn)
        .await;
    result
}

async fn release_batch(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
    batch: i64,
    after: Option<ReleasedUpTo>,
) -> Result<(usize, Option<ReleasedUpTo>), ReleaseError> {
    // From the start: before every message (none was recorded before 1970).
    let (after_created, after_id) = after.unwrap_or((chrono::DateTime::UNIX_EPOCH, Uuid::nil()));
    let held: Vec<Held> = sqlx::query_as(
        "SELECT m.id, m.created_at, m.idempotency_key, m.channel, m.request, m.traceparent
         FROM comms.messages m
         WHERE m.delivery_state = 'held' AND (m.created_at, m.id) > ($2, $3)
           AND NOT EXISTS (
               SELECT 1 FROM comms.pauses p
               WHERE (p.expires_at IS NULL OR p.expires_at > now())
                 AND (p.scope = 'global'
                      OR (p.scope = 'channel' AND p.scope_value = m.channel)
                      OR (p.scope = 'kind' AND p.scope_value = m.kind)
                      OR (p.scope = 'client' AND p.scope_value = COALESCE(m.client_id::text, ''))
                      OR (p.scope = 'sequence' AND m.trigger = 'sequence:' || p.scope_value)))
         ORDER BY m.created_at, m.id
         LIMIT $1",
    )
    .bind(batch)
    .bind(after_created)
    .bind(after_id)
    .fetch_all(pool)
    .await?;
    let exchange = topology.send_exchange();
    let bodies: Vec<(Vec<u8>, String)> = held
        .iter()
        .map(|message| {
            let body = serde_json::to_vec(&message.request).unwrap_or_default();
            (body, format!("send.{}", message.channel))
        })
        .collect();
    let mut outgoing = Vec::with_capacity(held.len());
    for (message, (body, routing_key)) in held.iter().zip(&bodies) {
        // The release is a step in the message's trace, and the sender continues it from here.
        let step = comms_runtime::trace_context::message_step(
            "pause.release",
            message.id,
            message.traceparent.as_deref(),
        );
        let mut headers = lapin::types::FieldTable::default();
        comms_runtime::trace_context::inject_span(&step, &mut headers);
        headers.insert(
            RELEASED_HEADER.into(),
            lapin::types::AMQPValue::LongString("1".into()),
        );
        outgoing.push(Outgoing {
            exchange: &exchange,
            routing_key,
            body,
            headers,
            message_id: Some(message.idempotency_key.clone()),
            ..Outgoing::default()
        });
    }
    // In creation order on one channel, every confirm awaited together, then one statement for
    // the lot: a crash in between publishes some again, which the sender ignores.
    publisher.publish_in_order(outgoing).await?;
    let ids: Vec<Uuid> = held.iter().map(|message| message.id).collect();
    crate::messages::ledger::moves::release_held(pool, &ids).await?;
    let last = held.last().map(|message| (message.created_at, message.id));
    Ok((held.len(), last))
}

/// Updates the held-messages gauges (how many, and how old the oldest is). The count reads every
/// held message, so housekeeping runs it every [`HELD_COUNT_EVERY`], not every tick.
pub async fn count_held(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let (held, oldest): (i64, f64) = sqlx::query_as(
        "SELECT count(*), COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float8
         FROM comms.messages WHERE delivery_state = 'held'",
    )
    .fetch_one(pool)
    .await?;
    metrics().held.with_label_values::<&str>(&[]).set(held);
    metrics()
        .oldest_held_seconds
        .with_label_values::<&str>(&[])
        .set(oldest);
    Ok(held)
}

/// How often housekeeping counts the held messages for [`count_held`]'s gauge. Every process
/// that sends runs housekeeping once a `pause.poll_interval`; a count every tick read a million
/// rows a second from each of them through a long pause.
pub const HELD_COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// The age in seconds of the oldest held message, `None` when nothing is held: the head of
/// `messages_held_idx`, one index entry however many are held. Keeps the age gauge current
/// every tick (and the count at 0 once nothing is held).
async fn oldest_held(pool: &PgPool) -> Result<Option<f64>, sqlx::Error> {
    let oldest: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM now() - min(created_at))::float8
         FROM comms.messages WHERE delivery_state = 'held'",
    )
    .fetch_one(pool)
    .await?;
    let gauges = metrics();
    gauges
        .oldest_held_seconds
        .with_label_values::<&str>(&[])
        .set(oldest.unwrap_or(0.0));
    if oldest.is_none() {
        gauges.held.with_label_values::<&str>(&[]).set(0);
    }
    Ok(oldest)
}

/// A global pause holds every message, so there is nothing to look for: the release's query
/// would read every held message to find none it may release, once a tick for as long as the
/// pause lasts. The switch's view may trail the database by a tick; the release's own query
/// decides.
fn globally_paused(switch: &super::switch::PauseSwitch) -> bool {
    switch
        .active()
        .iter()
        .any(|pause| pause.scope == super::Scope::Global)
}

/// Runs until `shutdown`: records expiries, releases held messages no pause covers, and keeps
/// the held gauges current. Every process that sends runs it; the advisory lock lets one act.
pub async fn housekeeping(
    runtime: comms_runtime::runtime::Runtime,
    switch: super::switch::PauseSwitch,
    shutdown: comms_runtime::shutdown::Shutdown,
) {
    let mut ticker = tokio::time::interval(runtime.settings.pause.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut publisher: Option<(lapin::Connection, Publisher)> = None;
    let mut counted: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match super::store::expire_due(&runtime.pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pauses.expired = n, "pause expired; scope resumed by itself"),
            Err(error) => tracing::warn!(%error, "could not record pause expiries"),
        }
        match oldest_held(&runtime.pool).await {
            Ok(Some(_)) => {}
            // Nothing held: the next message held is counted at once.
            Ok(None) => {
                counted = None;
                continue;
            }
            Err(_) => continue,
        }
        if counted.is_none_or(|at| at.elapsed() >= HELD_COUNT_EVERY) {
            counted = count_held(&runtime.pool)
                .await
                .is_ok()
                .then(tokio::time::Instant::now);
        }
        if switch.is_blind() || globally_paused(&switch) {
            continue;
        }
        if publisher.as_ref().is_none_or(|(_, p)| !p.is_usable()) {
            publisher = connect(&runtime).await;
        }
        let Some((_, channel)) = publisher.as_ref() else {
            continue;
        };
        // Batch after batch while full, so a long pause's backlog drains at the sender's speed,
        // not one batch per tick; a new pause is read by every batch's query.
        let (mut released, mut after) = (0, None);
        loop {
            let batch = release_held(
                &runtime.pool,
                channel,
                &runtime.topology,
                RELEASE_BATCH,
                after,
            );
            match batch.await {
                Ok((n, last)) => {
                    released += n;
                    after = last;
                    if n < RELEASE_BATCH as usize || shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "releasing held messages failed; will retry");
                    publisher = None;
                    break;
                }
            }
        }
        if released > 0 {
            tracing::info!(messages.released = released, "held messages released");
        }
    }
    if let Some((connection, _)) = publisher {
        let _ = connection.close(200, "shutdown".into()).await;
    }
}

async fn connect(
    runtime: &comms_runtime::runtime::Runtime,
) -> Option<(lapin::Connection, Publisher)> {
    let connection = comms_runtime::amqp::connect(&runtime.settings.amqp, "comms-pause-release")
        .await
        .ok()?;
    let publisher = Publisher::open(&connection).await.ok()?;
    Some((connection, publisher))
}
