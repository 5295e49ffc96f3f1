//! The retention job: personal content older than its class's retention (`COMMS__RETENTION__*`) is
//! removed, in small batches, and each run records what it removed as counts (docs/privacy.md).
//!
//! Every batch is one statement over at most `retention.batch_size` rows, chosen through an index
//! on the age column and locked with `SKIP LOCKED`, so it holds row locks for milliseconds and
//! never waits for (or blocks) the sender or the status worker on a row they are changing. A batch
//! changes only rows that still hold content, so a run repeated, interrupted or run twice at once
//! removes each row's content once: the job is idempotent. Message rows and the event log outlive
//! it: a message keeps its state, times, reasons, owner and source, and loses its address, subject,
//! body and request variables.
//!
//! The `message_bodies` statements are the ledger's ([`crate::messages::ledger::content`]), with
//! every other write of a message row.
//!
//! Ages are measured from `now`, which the caller passes (the scheduled run the wall clock, tests
//! a controlled clock).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::REMOVED;
use crate::messages::DeliveryState;
use crate::messages::ledger::{self, content};
use comms_runtime::settings::RetentionSettings;
use comms_runtime::shutdown::Shutdown;

/// States after which a message's content is no longer needed to send it.
const FINISHED: &[DeliveryState] = &[
    DeliveryState::Sent,
    DeliveryState::Delivered,
    DeliveryState::Undelivered,
    DeliveryState::Failed,
    DeliveryState::Blocked,
    DeliveryState::Cancelled,
    DeliveryState::UnknownDelivery,
];

/// The classes of personal content, in the order a run works through them.
pub const CLASSES: [&str; 5] = [
    "message_bodies",
    "raw_payloads",
    "inbound_bodies",
    "rejected_input",
    "delivery_callbacks",
];

/// What one run did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    /// The `comms.retention_runs` row; `None` when another run held the lock and this one did
    /// nothing.
    pub run_id: Option<i64>,
    pub dry_run: bool,
    /// Content recorded before this is removed, per class (absent: kept forever).
    pub cutoffs: BTreeMap<&'static str, DateTime<Utc>>,
    /// Rows whose content was removed (or would be), per class.
    pub counts: BTreeMap<&'static str, u64>,
    /// Statements run, per class (0 in a dry run).
    pub batches: BTreeMap<&'static str, u64>,
}

/// The moment before which content of each class is expired at `now`.
pub fn cutoffs(
    settings: &RetentionSettings,
    now: DateTime<Utc>,
) -> BTreeMap<&'static str, DateTime<Utc>> {
    let days = [
        settings.bodies_days,
        settings.raw_payloads_days,
        settings.inbound_bodies_days,
        settings.rejected_input_days,
        settings.delivery_callbacks_days,
    ];
    CLASSES
        .iter()
        .zip(days)
        .filter(|(_, days)| *days > 0)
        .map(|(class, days)| (*class, now - Duration::days(i64::from(days))))
        .collect()
}

/// One class's count of expired rows (dry run) and its batch statement.
fn statements(class: &str) -> (&'static str, &'static str) {
    match class {
        // A message's row is written by the ledger (crate::messages::ledger::content).
        "message_bodies" => (content::EXPIRED_BODIES_COUNT, content::EXPIRED_BODIES_BATCH),
        "raw_payloads" => (
            "SELECT count(*) FROM internal.provider_payloads WHERE received_at < $1",
            "DELETE FROM internal.provider_payloads WHERE id IN (
                 SELECT id FROM internal.provider_payloads WHERE received_at < $1
                 ORDER BY received_at LIMIT $3 FOR UPDATE SKIP LOCKED)",
        ),
        "inbound_bodies" => (
            "SELECT count(*) FROM internal.inbound_messages
             WHERE content_removed_at IS NULL AND received_at < $1",
            "UPDATE internal.inbound_messages SET from_address = $4, subject = NULL, body = '',
                 content_removed_at = $5
             WHERE id IN (SELECT id FROM internal.inbound_messages
                          WHERE content_removed_at IS NULL AND received_at < $1
                          ORDER BY received_at LIMIT $3 FOR UPDATE SKIP LOCKED)",
        ),
        "rejected_input" => (
            "SELECT count(*) FROM internal.rejected_input WHERE received_at < $1",
            "DELETE FROM internal.rejected_input WHERE id IN (
                 SELECT id FROM internal.rejected_input WHERE received_at < $1
                 ORDER BY received_at LIMIT $3 FOR UPDATE SKIP LOCKED)",
        ),
        _ => (
            "SELECT count(*) FROM comms.delivery_callbacks WHERE received_at < $1",
            "DELETE FROM comms.delivery_callbacks WHERE id IN (
                 SELECT id FROM comms.delivery_callbacks WHERE received_at < $1
                 ORDER BY received_at LIMIT $3 FOR UPDATE SKIP LOCKED)",
        ),
    }
}

/// Runs the job once at `now`. Only one run works at a time across the fleet (a session advisory
/// lock); a run that finds it taken returns at once with `run_id: None`. `stop` ends a run between
/// batches (what is done stays done and is recorded).
pub async fn run(
    pool: &PgPool,
    settings: &RetentionSettings,
    now: DateTime<Utc>,
    dry_run: bool,
    actor: &str,
    stop: Option<&Shutdown>,
) -> Result<RetentionReport, sqlx::Error> {
    let started_at = Utc::now();
    let cutoffs = cutoffs(settings, now);
    let mut report = RetentionReport {
        run_id: None,
        dry_run,
        cutoffs: cutoffs.clone(),
        counts: BTreeMap::new(),
        batches: BTreeMap::new(),
    };
    let mut lock = pool.acquire().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('comms.retention'))")
            .fetch_one(&mut *lock)
            .await?;
    if !locked {
        return Ok(report);
    }
    let worked = work(pool, settings, now, dry_run, stop, &mut report).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtext('comms.retention'))")
        .execute(&mut *lock)
        .await;
    worked?;
    unlocked?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO comms.retention_runs (actor, dry_run, cutoffs, counts, started_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(actor)
    .bind(dry_run)
    .bind(serde_json::to_value(&report.cutoffs).unwrap_or_default())
    .bind(serde_json::to_value(&report.counts).unwrap_or_default())
    .bind(started_at)
    .fetch_one(pool)
    .await?;
    report.run_id = Some(id);
    Ok(report)
}

async fn work(
    pool: &PgPool,
    settings: &RetentionSettings,
    now: DateTime<Utc>,
    dry_run: bool,
    stop: Option<&Shutdown>,
    report: &mut RetentionReport,
) -> Result<(), sqlx::Error> {
    let finished = ledger::names(FINISHED);
    let batch = i64::from(settings.batch_size);
    for (class, cutoff) in report.cutoffs.clone() {
        let (count, change) = statements(class);
        if dry_run {
            let expired: i64 = sqlx::query_scalar(count)
                .bind(cutoff)
                .bind(&finished)
                .fetch_one(pool)
                .await?;
            report.counts.insert(class, expired.max(0) as u64);
            report.batches.insert(class, 0);
            continue;
        }
        let (mut removed, mut batches) = (0u64, 0u64);
        loop {
            if stop.is_some_and(|s| s.is_cancelled()) {
                break;
            }
            let mut query = sqlx::query(change).bind(cutoff);
            // Each statement binds only the parameters it names; unused ones would be refused.
            query = match class {
                "message_bodies" => query.bind(&finished).bind(batch).bind(REMOVED).bind(now),
                "inbound_bodies" => query
                    .bind(None::<String>)
                    .bind(batch)
                    .bind(REMOVED)
                    .bind(now),
                _ => query.bind(None::<String>).bind(batch),
            };
            let changed = query.execute(pool).await?.rows_affected();
            batches += 1;
            removed += changed;
            if changed < batch as u64 {
                break;
            }
        }
        report.counts.insert(class, removed);
        report.batches.insert(class, batches);
    }
    Ok(())
}
