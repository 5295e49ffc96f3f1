//! Rolling a sequence version back: its rollback path applied once to everyone in flight.
//!
//! Kept apart from [`super::store`] because it reaches past the sequence's own rows: it cancels
//! enrolments and their unsent step messages, marks corrections due and opens the escalation
//! owner's task, all in one transaction with its audit row.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::SequenceError;
use super::store::{audit, lock};

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    pub name: String,
    pub version: i32,
    /// Enrolments whose remaining steps were cancelled.
    pub cancelled: i32,
    /// Step messages not yet sent that were cancelled.
    pub messages_cancelled: i64,
    /// Corrections due (sent once each by the scheduler) and sent so far.
    pub corrections_due: i64,
    pub corrections_sent: i32,
    /// The escalation owner's task.
    pub task: Option<Uuid>,
    /// False when the version had already been rolled back (nothing changed this time).
    pub changed: bool,
}

/// Applies the rollback path to everyone in flight, once: cancels their remaining steps and the
/// step messages not sent yet, marks a correction due for every contact who already got a step
/// (when the path has one), opens a task for the escalation owner and records the result.
/// Rolling back again changes nothing and returns the recorded result.
pub async fn rollback(
    pool: &PgPool,
    (name, version): (&str, i32),
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<RolledBack, SequenceError> {
    let (by, reason) = (by.trim(), reason.trim());
    if by.is_empty() || reason.is_empty() {
        return Err(SequenceError::Invalid(
            "--by and --reason are required".into(),
        ));
    }
    let mut tx = pool.begin().await?;
    let row = lock(&mut tx, name, version).await?;
    let due: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.sequence_enrolments
         WHERE sequence_name = $1 AND sequence_version = $2 AND correction_due",
    )
    .bind(name)
    .bind(version)
    .fetch_one(&mut *tx)
    .await?;
    if row.state == "rolled_back" {
        return Ok(RolledBack {
            name: name.into(),
            version,
            cancelled: row.rollback_cancelled.unwrap_or(0),
            messages_cancelled: 0,
            corrections_due: due,
            corrections_sent: row.corrections_sent,
            task: None,
            changed: false,
        });
    }
    if row.state == "draft" {
        return Err(SequenceError::Conflict(format!(
            "sequence {name}@{version} is a draft: nothing runs to roll back"
        )));
    }
    let correct = row.correction_template.is_some();
    let cancelled: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE comms.sequence_enrolments e SET state = 'cancelled', exit_reason = 'rolled_back',
             exit_detail = $3, next_step = NULL, next_due_at = NULL, ended_at = $4,
             correction_due = $5 AND EXISTS (
                 SELECT 1 FROM comms.sequence_sends s
                 JOIN comms.messages m ON m.idempotency_key = s.idempotency_key
                 WHERE s.enrolment_id = e.id AND s.step > 0
                   AND m.delivery_state IN ('sending', 'sent', 'delivered'))
         WHERE sequence_name = $1 AND sequence_version = $2 AND state = 'active'
         RETURNING id",
    )
    .bind(name)
    .bind(version)
    .bind(reason)
    .bind(now)
    .bind(correct)
    .fetch_all(&mut *tx)
    .await?;
    let messages_cancelled = super::exit::cancel_unsent(&mut tx, &cancelled, reason, by).await?;
    for enrolment in &cancelled {
        super::exit::timeline(&mut tx, *enrolment, "rolled_back", reason, by).await?;
    }
    let corrections_due: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.sequence_enrolments WHERE id = ANY($1) AND correction_due",
    )
    .bind(&cancelled)
    .fetch_one(&mut *tx)
    .await?;
    let count = i32::try_from(cancelled.len()).unwrap_or(i32::MAX);
    sqlx::query(
        "UPDATE comms.sequences SET state = 'rolled_back', rolled_back_by = $3, rolled_back_at = $4,
             rollback_reason = $5, rollback_cancelled = $6
         WHERE name = $1 AND version = $2",
    )
    .bind(name)
    .bind(version)
    .bind(by)
    .bind(now)
    .bind(reason)
    .bind(count)
    .execute(&mut *tx)
    .await?;
    let owner = row
        .escalation_owner
        .clone()
        .unwrap_or_else(|| by.to_string());
    let task: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.tasks (owner, title, next_action, reason, due_at)
         VALUES ($1, $2, $3, $4, $5 + interval '1 day') RETURNING id",
    )
    .bind(&owner)
    .bind(format!("Sequence {name}@{version} was rolled back"))
    .bind(format!(
        "check the {count} cancelled enrolments and the corrections; fix and activate a new version"
    ))
    .bind(format!("rolled back by {by}: {reason}"))
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let detail = serde_json::json!({
        "cancelled": count, "messages_cancelled": messages_cancelled,
        "corrections_due": corrections_due, "task": task,
    });
    audit(
        &mut tx,
        (name, version),
        "rolled_back",
        by,
        Some(reason),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(RolledBack {
        name: name.into(),
        version,
        cancelled: count,
        messages_cancelled,
        corrections_due,
        corrections_sent: row.corrections_sent,
        task: Some(task),
        changed: true,
    })
}
