//! Owner tasks as operators handle them: the open ones by owner and age, and closing one. Closing
//! a reply task records the response time, from the reply's arrival to the owner's answer.
//! `commsctl tasks` and the gateway's console both call these, so a task closes the same way
//! whichever tool closed it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// An open task.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OpenTask {
    pub id: Uuid,
    pub owner: String,
    pub title: String,
    pub next_action: String,
    pub reason: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub message_id: Option<Uuid>,
}

/// A task just closed.
#[derive(Debug, Clone, Serialize)]
pub struct Closed {
    pub task: Uuid,
    pub done_by: String,
    /// For a reply task: seconds from the reply's arrival to this answer.
    pub response_seconds: Option<i64>,
}

/// Why a task could not be closed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task {0} is not open (missing or already closed)")]
    NotOpen(Uuid),
    #[error("who closed the task must be named")]
    NoActor,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Open tasks, by owner then oldest first; only `owner`'s when given.
pub async fn open(pool: &PgPool, owner: Option<&str>) -> Result<Vec<OpenTask>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, owner, title, next_action, reason, due_at, created_at, message_id FROM comms.tasks
         WHERE state = 'open' AND ($1::text IS NULL OR owner = $1) ORDER BY owner, created_at",
    )
    .bind(owner)
    .fetch_all(pool)
    .await
}

/// Marks an open task done by `by`; a reply task also records when the reply was answered.
pub async fn close(pool: &PgPool, id: Uuid, by: &str) -> Result<Closed, TaskError> {
    let by = by.trim();
    if by.is_empty() {
        return Err(TaskError::NoActor);
    }
    let mut tx = pool.begin().await?;
    let closed: Option<(Option<Uuid>, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE comms.tasks SET state = 'done', done_at = now(), done_by = $2
         WHERE id = $1 AND state = 'open' RETURNING inbound_id, done_at",
    )
    .bind(id)
    .bind(by)
    .fetch_optional(&mut *tx)
    .await?;
    let (inbound, done_at) = closed.ok_or(TaskError::NotOpen(id))?;
    let mut response_seconds = None;
    if let Some(inbound) = inbound {
        let received: DateTime<Utc> = sqlx::query_scalar(
            "UPDATE internal.inbound_messages SET responded_at = $2 WHERE id = $1 RETURNING received_at",
        )
        .bind(inbound)
        .bind(done_at)
        .fetch_one(&mut *tx)
        .await?;
        response_seconds = Some((done_at - received).num_seconds());
    }
    tx.commit().await?;
    Ok(Closed {
        task: id,
        done_by: by.to_string(),
        response_seconds,
    })
}

/// An operational task (about no one message): for `owner`, unless an open task with the same
/// `title` is already theirs. Returns whether it was opened.
///
/// Several workers can see the same episode (every sender replica fails over on its own), and
/// the owner wants one task per episode: the check and the insert run under a transaction-scoped
/// advisory lock on the title, so two writers cannot both find "none open".
pub async fn open_once(
    pool: &PgPool,
    owner: &str,
    title: &str,
    next_action: &str,
    reason: &str,
    due_in: chrono::Duration,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('comms.tasks:' || $1))")
        .bind(title)
        .execute(&mut *tx)
        .await?;
    let opened = sqlx::query(
        "INSERT INTO comms.tasks (owner, title, next_action, reason, due_at)
         SELECT $1, $2, $3, $4, now() + $5
         WHERE NOT EXISTS (SELECT 1 FROM comms.tasks WHERE owner = $1 AND title = $2 AND state = 'open')",
    )
    .bind(owner)
    .bind(title)
    .bind(next_action)
    .bind(reason)
    .bind(due_in)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(opened == 1)
}
