//! Owner tasks about a message: a person must act on it (a delivery that failed or stayed
//! unknown, a reply, a decision on an approval). They are written here, alongside the state
//! change or timeline entry that calls for them, by the writer that makes it, inside its own
//! transaction — so the task commits with the change or not at all.
//!
//! The sender's owner task rides inside [`super::transition`]'s one statement; [`open`] is for
//! writers that move the message by other statements (the status worker's one-callback path and
//! reconciler, replies, approval decisions), and [`open_many`] is the status worker's group path
//! (one statement for the whole group). Operational tasks that are not about one message
//! (watchdog, partial loss, breaker, incidents, webhooks, the digest report, sequences) stay with
//! the worker that raises them.

use sqlx::PgExecutor;
use uuid::Uuid;

/// How long an owner has to act on a message's task unless the writer says otherwise.
pub fn due_in_a_day() -> chrono::Duration {
    chrono::Duration::hours(24)
}

/// One owner task about a message (or, for an unmatched reply, about an inbound message only).
#[derive(Debug, Clone)]
pub struct MessageTask<'a> {
    pub owner: &'a str,
    pub title: &'a str,
    pub next_action: &'a str,
    pub reason: &'a str,
    /// Due this long after the task is written.
    pub due_in: chrono::Duration,
    pub record_type: Option<&'a str>,
    pub record_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    /// The reply the task answers, for tasks opened by the replies worker.
    pub inbound_id: Option<Uuid>,
}

/// Opens `task`.
pub async fn open<'e>(db: impl PgExecutor<'e>, task: &MessageTask<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.tasks (owner, title, next_action, reason, due_at, record_type, record_id, message_id, inbound_id)
         VALUES ($1, $2, $3, $4, now() + $5, $6, $7, $8, $9)",
    )
    .bind(task.owner)
    .bind(task.title)
    .bind(task.next_action)
    .bind(task.reason)
    .bind(task.due_in)
    .bind(task.record_type)
    .bind(task.record_id)
    .bind(task.message_id)
    .bind(task.inbound_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Owner tasks of a group, one array per column, each due within a day, in the order they are
/// to be numbered.
#[derive(Default)]
pub struct Tasks {
    pub owners: Vec<String>,
    pub titles: Vec<String>,
    pub next_actions: Vec<&'static str>,
    pub reasons: Vec<String>,
    pub record_types: Vec<String>,
    pub record_ids: Vec<Uuid>,
    pub message_ids: Vec<Uuid>,
}

/// Opens every task of `rows`, in their order, with one statement.
pub async fn open_many<'e>(db: impl PgExecutor<'e>, rows: &Tasks) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.tasks (owner, title, next_action, reason, due_at, record_type, record_id, message_id)
         SELECT t.owner, t.title, t.next_action, t.reason, now() + interval '24 hours',
                t.record_type, t.record_id, t.message_id
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::uuid[])
              WITH ORDINALITY AS t(owner, title, next_action, reason, record_type, record_id, message_id, position)
         ORDER BY t.position",
    )
    .bind(&rows.owners)
    .bind(&rows.titles)
    .bind(&rows.next_actions)
    .bind(&rows.reasons)
    .bind(&rows.record_types)
    .bind(&rows.record_ids)
    .bind(&rows.message_ids)
    .execute(db)
    .await?;
    Ok(())
}
