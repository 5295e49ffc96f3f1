//! Replay and purge, each audited.
//!
//! **Replay** publishes a dead letter's stored bytes back to the queue it was refused on, through
//! `comms.requeue` with routing key `replay.<queue>` — the binding (`*.<queue>`) that brings
//! every retry back — so it meets the same consumer as any message: the sender's preflight,
//! approval gate, pause switch and rate limits all apply, and a request whose idempotency key was
//! already recorded changes nothing (a message already sent is not sent again). The origin
//! exchange and routing key are not used because the routing key recorded for a message that
//! came back from a retry tier is the tier's (`5s.comms.send.sms`), which no exchange routes.
//!
//! Each row is marked `replayed` only after the broker confirmed its publish. A replay killed in
//! between leaves the row `dead`; replaying it again is harmless for the same reason a redelivery
//! is. One replay or purge runs at a time (a session advisory lock), so two operators cannot
//! publish the same rows side by side.
//!
//! **Purge** keeps each row as the record of what was refused (queue, reason, time) but deletes
//! its payload and headers.
//!
//! Every replay and purge that changes something writes one row of `internal.dead_letter_actions`:
//! who, when, why, the filters, how many matched and how many were done. A dry run changes
//! nothing, writes nothing, and reports what it would do.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;
use sqlx::PgPool;

use super::{DeadLetter, Filter};
use comms_runtime::amqp::{Outgoing, PublishError, Publisher};
use comms_runtime::topology::Topology;

/// The advisory lock key of dead-letter actions (one at a time, fleet-wide).
const LOCK: i64 = 0x6465_6164; // "dead"
/// Most dead letters one action takes.
pub const ACTION_MAX: i64 = 10_000;
/// Header a replayed message carries: the id of its replay action.
pub const REPLAY_HEADER: &str = "x-comms-replay";

#[derive(Debug, thiserror::Error)]
pub enum DeadError {
    #[error("a reason is required (--reason): it is kept with the audit record")]
    ReasonRequired,
    #[error("--rate must be a positive number of messages per second")]
    BadRate,
    #[error("another dead-letter replay or purge is running; try again when it is done")]
    Busy,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("publishing a replay: {0} (replayed so far: {1}; the audit record says so)")]
    Publish(PublishError, usize),
}

/// What an operator asks for.
#[derive(Debug, Clone)]
pub struct ActionRequest {
    pub actor: String,
    pub reason: String,
    pub dry_run: bool,
    /// Replay only: at most this many messages per second (none: as fast as confirms allow).
    pub rate: Option<f64>,
}

/// An audit record of `internal.dead_letter_actions`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Action {
    pub id: i64,
    /// `replay` or `purge`.
    pub action: String,
    pub actor: String,
    pub reason: String,
    pub filters: serde_json::Value,
    pub matched: i32,
    pub done: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a replay or purge did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    pub action: &'static str,
    pub dry_run: bool,
    /// The audit record (none for a dry run or when nothing matched).
    pub action_id: Option<i64>,
    pub matched: usize,
    /// Replayed or purged (dry: would be).
    pub done: usize,
    /// Dead letters that cannot be replayed, with why (their origin is not a work queue).
    pub skipped: Vec<Skipped>,
    /// The dead letters concerned (masked previews), at most the first 100.
    pub letters: Vec<DeadLetter>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub id: i64,
    pub why: String,
}

pub(super) async fn action(pool: &PgPool, id: i64) -> Result<Option<Action>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, action, actor, reason, filters, matched, done, started_at, finished_at
         FROM internal.dead_letter_actions WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

fn check(request: &ActionRequest) -> Result<(), DeadError> {
    if request.reason.trim().is_empty() || request.actor.trim().is_empty() {
        return Err(DeadError::ReasonRequired);
    }
    if request.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(DeadError::BadRate);
    }
    Ok(())
}

/// Runs `work` (a replay or purge) after checking `request`, holding the fleet-wide action lock
/// (a session advisory lock on a connection of its own) until it is done.
async fn exclusive<T>(
    pool: &PgPool,
    request: &ActionRequest,
    work: impl std::future::Future<Output = Result<T, DeadError>>,
) -> Result<T, DeadError> {
    check(request)?;
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Err(DeadError::Busy);
    }
    let result = work.await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await;
    result
}

/// The dead letters (state `dead` only, whatever `filter` says) an action works through.
async fn still_dead(
    pool: &PgPool,
    topology: &Topology,
    filter: &Filter,
) -> Result<(Filter, Vec<DeadLetter>), sqlx::Error> {
    let mut filter = filter.clone();
    filter.all_states = false;
    let letters = super::matching(pool, topology.namespace(), &filter, ACTION_MAX).await?;
    Ok((filter, letters))
}

async fn open_action(
    pool: &PgPool,
    kind: &str,
    request: &ActionRequest,
    filter: &Filter,
    matched: usize,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO internal.dead_letter_actions (action, actor, reason, filters, matched, rate_per_second)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(kind)
    .bind(&request.actor)
    .bind(&request.reason)
    .bind(serde_json::to_value(filter).unwrap_or_default())
    .bind(i32::try_from(matched).unwrap_or(i32::MAX))
    .bind(request.rate)
    .fetch_one(pool)
    .await
}

async fn close_action(pool: &PgPool, id: i64, done: usize) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE internal.dead_letter_actions SET done = $2, finished_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(i32::try_from(done).unwrap_or(i32::MAX))
    .execute(pool)
    .await
    .map(|_| ())
}

fn report(kind: &'static str, request: &ActionRequest, letters: Vec<DeadLetter>) -> ActionReport {
    ActionReport {
        action: kind,
        dry_run: request.dry_run,
        action_id: None,
        matched: letters.len(),
        done: 0,
        skipped: Vec::new(),
        letters,
    }
}

/// Replays the dead letters `filter` matches (state `dead`), oldest first.
pub async fn replay(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
    filter: &Filter,
    request: &ActionRequest,
) -> Result<ActionReport, DeadError> {
    exclusive(
        pool,
        request,
        replay_locked(pool, publisher, topology, filter, request),
    )
    .await
}

async fn replay_locked(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
    filter: &Filter,
    request: &ActionRequest,
) -> Result<ActionReport, DeadError> {
    let (filter, letters) = still_dead(pool, topology, filter).await?;
    let queues: Vec<String> = topology.work_queues().into_iter().map(|q| q.name).collect();
    let mut out = report("replay", request, Vec::new());
    out.matched = letters.len();
    let mut replayable = Vec::new();
    for letter in letters {
        if queues.contains(&letter.queue) {
            replayable.push(letter);
        } else {
            out.skipped.push(Skipped {
                id: letter.id,
                why: format!("its origin `{}` is not a work queue", letter.queue),
            });
        }
    }
    if request.dry_run || replayable.is_empty() {
        out.done = replayable.len();
        out.letters = replayable.into_iter().take(100).collect();
        return Ok(out);
    }
    let id = open_action(pool, "replay", request, &filter, out.matched).await?;
    out.action_id = Some(id);
    let exchange = topology.requeue_exchange();
    let mut ticker = request.rate.map(|rate| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    for letter in &replayable {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        let mut headers = carried_headers(letter);
        headers.insert(REPLAY_HEADER.into(), AMQPValue::LongLongInt(id));
        comms_runtime::trace_context::inject_current(&mut headers);
        let routing_key = format!("replay.{}", letter.queue);
        let published = publisher
            .publish(Outgoing {
                exchange: &exchange,
                routing_key: &routing_key,
                body: &letter.payload,
                headers,
                message_id: None,
                content_type: None,
            })
            .await;
        if let Err(error) = published {
            close_action(pool, id, out.done).await?;
            return Err(DeadError::Publish(error, out.done));
        }
        sqlx::query(
            "UPDATE internal.rejected_input SET state = 'replayed', action_id = $2, acted_at = now()
             WHERE id = $1 AND state = 'dead'",
        )
        .bind(letter.id)
        .bind(id)
        .execute(pool)
        .await?;
        out.done += 1;
    }
    close_action(pool, id, out.done).await?;
    out.letters = replayable.into_iter().take(100).collect();
    Ok(out)
}

/// The headers a replayed letter takes back to its worker: the fleet's own (`x-comms-*`, such as
/// the gateway's `x-comms-provider` and `x-comms-content-type` on an inbound reply or a status
/// callback), without the retry and dead-letter bookkeeping, and the routing key it was first
/// published with (`x-comms-routing-key`) when its own was not a retry tier's — the replay's
/// routing key (`replay.<queue>`) names no source, and a worker that reads its source from the
/// routing key must see the original.
fn carried_headers(letter: &DeadLetter) -> FieldTable {
    use comms_runtime::runtime::{ORIGIN_HEADER, REASON_HEADER, RETRY_HEADER, ROUTING_KEY_HEADER};
    let mut headers = FieldTable::default();
    if let Some(stored) = letter.headers.as_object() {
        for (name, value) in stored {
            let bookkeeping = [RETRY_HEADER, REASON_HEADER, ORIGIN_HEADER].contains(&name.as_str());
            if let (true, false, Some(text)) =
                (name.starts_with("x-comms-"), bookkeeping, value.as_str())
            {
                headers.insert(name.as_str().into(), AMQPValue::LongString(text.into()));
            }
        }
    }
    let original = !letter.routing_key.ends_with(&letter.queue) && !letter.routing_key.is_empty();
    if original && !headers.inner().contains_key(ROUTING_KEY_HEADER) {
        headers.insert(
            ROUTING_KEY_HEADER.into(),
            AMQPValue::LongString(letter.routing_key.as_str().into()),
        );
    }
    headers
}

/// Purges the dead letters `filter` matches (state `dead`): their payloads are deleted, their
/// rows stay as the record.
pub async fn purge(
    pool: &PgPool,
    topology: &Topology,
    filter: &Filter,
    request: &ActionRequest,
) -> Result<ActionReport, DeadError> {
    exclusive(pool, request, purge_locked(pool, topology, filter, request)).await
}

async fn purge_locked(
    pool: &PgPool,
    topology: &Topology,
    filter: &Filter,
    request: &ActionRequest,
) -> Result<ActionReport, DeadError> {
    let (filter, letters) = still_dead(pool, topology, filter).await?;
    let ids: Vec<i64> = letters.iter().map(|l| l.id).collect();
    let mut out = report("purge", request, letters.into_iter().take(100).collect());
    out.matched = ids.len();
    if request.dry_run || ids.is_empty() {
        out.done = ids.len();
        return Ok(out);
    }
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO internal.dead_letter_actions (action, actor, reason, filters, matched)
         VALUES ('purge', $1, $2, $3, $4) RETURNING id",
    )
    .bind(&request.actor)
    .bind(&request.reason)
    .bind(serde_json::to_value(&filter).unwrap_or_default())
    .bind(i32::try_from(ids.len()).unwrap_or(i32::MAX))
    .fetch_one(&mut *tx)
    .await?;
    let purged = sqlx::query(
        "UPDATE internal.rejected_input
         SET state = 'purged', action_id = $2, acted_at = now(), payload = ''::bytea, headers = '{}'
         WHERE id = ANY($1) AND state = 'dead'",
    )
    .bind(&ids)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    out.done = usize::try_from(purged).unwrap_or(0);
    sqlx::query(
        "UPDATE internal.dead_letter_actions SET done = $2, finished_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(i32::try_from(purged).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    out.action_id = Some(id);
    Ok(out)
}

#[cfg(test)]
#[path = "act_tests.rs"]
mod tests;
