//! The one owner of writes to a message's life: every change of `comms.messages` and every entry
//! of `comms.message_events` — and every owner task about a message in `comms.tasks` — goes through a function here, whichever worker makes it (sender,
//! status worker, replies, gateway, approvals, the pause release, privacy, sequences, outcomes).
//!
//! Workers say *what* happened — a typed [`DeliveryState`] move with its [`Event`] and, where a
//! person must act, a [`Task`] — and this module says *how* it is stored. The SQL of both tables
//! is therefore in one place: a column, a guard (`WHERE delivery_state = ANY(…)`) or an event
//! field changes here and nowhere else. The moves a writer may make are listed in
//! [`crate::messages::transitions`].
//!
//! - [`transition`] — a conditional move of one message with its event and owner task, in one
//!   statement (the sender's path);
//! - [`append_event`] — one timeline entry, for writers that change other tables in the same
//!   transaction (replies, approvals, outcomes, the status worker's one-callback path);
//! - [`record`] — recording a new message (one, or a group recorded and claimed together) and
//!   its rendered content;
//! - [`calls`] — the provider call of a claimed message: its mark (committed before the call),
//!   and the release of a claim whose call never started;
//! - [`batch`] — the group paths' single-statement writes (`unnest` arrays): the sender's `sent`
//!   outcomes, the status worker's moves and timeline entries;
//! - [`moves`] — the other named moves: callbacks, the reconciler, replies and opt-outs, the pause
//!   release, approval decisions, cancellations by erasure and sequence rollback;
//! - [`content`] — emptying personal content (retention, erasure): a privacy decision, stored here;
//! - [`tasks`] — owner tasks about a message, for writers that move it by other statements (the
//!   status worker, replies, approval decisions); operational tasks stay with their worker.
//!
//! Statements are runtime-checked `sqlx::query` (not `query!`): see docs/architecture.md,
//! "A message's life".

pub mod batch;
pub mod calls;
pub mod content;
pub mod moves;
pub mod record;
pub mod tasks;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::DeliveryState;

/// One entry of the message's timeline, as a state change writes it.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_type: &'static str,
    pub reason: String,
    pub recovery_rule: Option<String>,
    pub detail: serde_json::Value,
}

impl Event {
    pub fn new(event_type: &'static str, reason: impl Into<String>) -> Self {
        Self {
            event_type,
            reason: reason.into(),
            recovery_rule: None,
            detail: json!({}),
        }
    }
    pub fn recovery(mut self, rule: impl Into<String>) -> Self {
        self.recovery_rule = Some(rule.into());
        self
    }
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// An owner task: a person must act on this message.
#[derive(Debug, Clone)]
pub struct Task {
    pub title: String,
    pub next_action: String,
    pub due_in: chrono::Duration,
}

/// A move of a message to a new state, with what changes alongside it.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub from: &'a [DeliveryState],
    pub to: DeliveryState,
    pub failure_reason: Option<String>,
    pub next_action: Option<String>,
    pub send_after: Option<DateTime<Utc>>,
    pub held_by_pause: Option<Uuid>,
    pub provider: Option<&'static str>,
    pub provider_message_id: Option<String>,
    /// Added to the attempt count: 1 for a claim, -1 to undo one that never reached a provider.
    pub attempt_delta: i32,
    /// For a move to `sending` (a claim): the claim's id, which the call's mark and every later
    /// move of this dispatch name ([`calls`]). For a move from `sending`: made only while this
    /// claim still holds the message; `None` moves it whichever claim holds it.
    pub claim: Option<Uuid>,
    /// A claim followed by its provider call with nothing awaited in between (the one-message
    /// path): the claim is also the call's mark ([`calls`]).
    pub call_started: bool,
    pub event: Event,
    pub task: Option<Task>,
}

impl<'a> Transition<'a> {
    pub fn new(from: &'a [DeliveryState], to: DeliveryState, event: Event) -> Self {
        Self {
            from,
            to,
            failure_reason: None,
            next_action: None,
            send_after: None,
            held_by_pause: None,
            provider: None,
            provider_message_id: None,
            attempt_delta: 0,
            claim: None,
            call_started: false,
            event,
            task: None,
        }
    }
}

/// The names of `states`, to bind as a SQL `text[]`.
pub fn names(states: &[DeliveryState]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

/// Applies `transition` to message `id` if it is still in one of its `from` states, written by
/// `actor`. Returns the new attempt count, or `None` when the message had already moved on
/// (another delivery won).
///
/// The state change, its event and its owner task are one statement: they commit together, and
/// the event and task exist only if the move happened.
pub async fn transition<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
    actor: &str,
    transition: &Transition<'_>,
) -> Result<Option<i32>, sqlx::Error> {
    debug_assert!(
        transition.from.iter().all(|f| f.may_move_to(transition.to)),
        "an illegal move to {} (crate::messages::transitions)",
        transition.to
    );
    let from = names(transition.from);
    let event = &transition.event;
    let task = transition.task.as_ref();
    sqlx::query_scalar(
        "WITH moved AS (
             UPDATE comms.messages SET
                 delivery_state = $2,
                 -- A message that went out has no failure to show (a retry's reason stays in
                 -- its timeline).
                 failure_reason = CASE WHEN $2 IN ('sent', 'delivered') THEN $3
                                       ELSE COALESCE($3, failure_reason) END,
                 next_action = $4,
                 send_after = COALESCE($5, send_after),
                 held_by_pause = COALESCE($6, held_by_pause),
                 provider = COALESCE($7, provider),
                 provider_message_id = COALESCE($8, provider_message_id),
                 attempt_count = attempt_count + $9,
                 dispatched_at = CASE WHEN $2 = 'sent' THEN now() ELSE dispatched_at END,
                 opt_out_state = CASE WHEN $3 IN ('opted_out', 'suppressed') THEN $3 ELSE opt_out_state END,
                 dispatch_claim = CASE WHEN $2 = 'sending' THEN $19::uuid END,
                 call_started_at = CASE WHEN $2 <> 'sending' THEN call_started_at
                                        WHEN $20 THEN now() END,
                 updated_at = now()
             WHERE id = $1 AND delivery_state = ANY($10)
               AND ($2 = 'sending' OR $19::uuid IS NULL OR dispatch_claim = $19::uuid)
             RETURNING id, attempt_count, source, owner, record_type, record_id),
         event AS (
             INSERT INTO comms.message_events
                 (message_id, event_type, actor, source, owner, reason, recovery_rule, detail)
             SELECT id, $11, $12, source, owner, $13, $14, $15 FROM moved),
         task AS (
             INSERT INTO comms.tasks (owner, title, next_action, reason, due_at, record_type, record_id, message_id)
             SELECT owner, $16, $17, $13, now() + $18, record_type, record_id, id FROM moved
             WHERE $16::text IS NOT NULL)
         SELECT attempt_count FROM moved",
    )
    .bind(id)
    .bind(transition.to.as_str())
    .bind(&transition.failure_reason)
    .bind(&transition.next_action)
    .bind(transition.send_after)
    .bind(transition.held_by_pause)
    .bind(transition.provider)
    .bind(&transition.provider_message_id)
    .bind(transition.attempt_delta)
    .bind(&from)
    .bind(event.event_type)
    .bind(actor)
    .bind(&event.reason)
    .bind(&event.recovery_rule)
    .bind(&event.detail)
    .bind(task.map(|t| t.title.as_str()))
    .bind(task.map(|t| t.next_action.as_str()))
    .bind(task.map_or(chrono::Duration::zero(), |t| t.due_in))
    .bind(transition.claim)
    .bind(transition.call_started)
    .fetch_optional(db)
    .await
}

/// One timeline entry written on its own (the writer changes other tables in the same
/// transaction). `message_id` is `None` for a contact-level entry (an unmatched reply).
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub message_id: Option<Uuid>,
    pub event_type: &'a str,
    pub actor: &'a str,
    pub source: &'a str,
    pub owner: Option<&'a str>,
    pub reason: &'a str,
    pub recovery_rule: Option<&'a str>,
    pub detail: &'a serde_json::Value,
}

/// Appends `entry` to its message's timeline.
pub async fn append_event<'e>(
    db: impl PgExecutor<'e>,
    entry: Entry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.message_events
             (message_id, event_type, actor, source, owner, reason, recovery_rule, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry.message_id)
    .bind(entry.event_type)
    .bind(entry.actor)
    .bind(entry.source)
    .bind(entry.owner)
    .bind(entry.reason)
    .bind(entry.recovery_rule)
    .bind(entry.detail)
    .execute(db)
    .await?;
    Ok(())
}
