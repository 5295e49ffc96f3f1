//! The named moves of a message outside the sender's [`super::transition`]: a provider callback,
//! the reconciler's `unknown_delivery`, reply and opt-out states, the pause release, an approval
//! decision, cancellation by erasure or a sequence's rollback, and the timeline entries that go
//! with moves made elsewhere (a sequence exit, a one-click unsubscribe).
//!
//! Each is one function with the statement it has always been; the caller still owns the
//! transaction and the decision, this module owns how the row and its timeline are written.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::names;
use crate::messages::{DeliveryState, OptOutState, ReplyState};

/// A provider callback's move of message `id` to `to` (decided by the status worker; no guard:
/// the caller holds the row locked and decided the move from its current state). `delivered_at`
/// is set from `received_at` by a move to `delivered`, `dispatched_at` by a move to `sent`.
pub async fn apply_callback<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
    to: DeliveryState,
    failure_reason: Option<&str>,
    next_action: Option<&str>,
    received_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE comms.messages SET delivery_state = $2,
             failure_reason = CASE WHEN $2 IN ('sent', 'delivered') THEN $3
                                   ELSE COALESCE($3, failure_reason) END,
             next_action = $4,
             delivered_at = CASE WHEN $2 = 'delivered' THEN COALESCE(delivered_at, $5) ELSE delivered_at END,
             dispatched_at = CASE WHEN $2 = 'sent' THEN COALESCE(dispatched_at, now()) ELSE dispatched_at END,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(to.as_str())
    .bind(failure_reason)
    .bind(next_action)
    .bind(received_at)
    .execute(db)
    .await?;
    Ok(())
}

/// The reconciler's move `sent → unknown_delivery`: the provider never said what became of
/// message `id`. Returns its owner, record type and record id, or `None` when a callback moved it
/// meanwhile.
pub async fn mark_unknown_delivery<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
    reason: &str,
    next_action: &str,
) -> Result<Option<(String, String, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE comms.messages SET delivery_state = 'unknown_delivery', failure_reason = $2,
             next_action = $3, updated_at = now()
         WHERE id = $1 AND delivery_state = 'sent'
         RETURNING owner, record_type, record_id",
    )
    .bind(id)
    .bind(reason)
    .bind(next_action)
    .fetch_optional(db)
    .await
}

/// Records on message `id` that its recipient opted out or is suppressed. An opt-out is never
/// downgraded to a suppression, and a message already in `state` is left as it is.
pub async fn set_opt_out<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
    state: OptOutState,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE comms.messages SET opt_out_state = $2, updated_at = now()
         WHERE id = $1 AND opt_out_state <> $2 AND NOT ($2 = 'suppressed' AND opt_out_state = 'opted_out')",
    )
    .bind(id)
    .bind(state.as_str())
    .execute(db)
    .await?;
    Ok(())
}

/// Records a reply on message `id` (`replied` always; `auto_reply` only over `none`, so an
/// automatic answer never hides a real one).
pub async fn set_reply<'e>(
    db: impl PgExecutor<'e>,
    id: Option<Uuid>,
    state: ReplyState,
) -> Result<(), sqlx::Error> {
    let statement = match state {
        ReplyState::AutoReply => {
            "UPDATE comms.messages SET reply_state = $2, updated_at = now() WHERE id = $1 AND reply_state = 'none'"
        }
        ReplyState::Replied | ReplyState::None => {
            "UPDATE comms.messages SET reply_state = $2, updated_at = now() WHERE id = $1"
        }
    };
    sqlx::query(statement)
        .bind(id)
        .bind(state.as_str())
        .execute(db)
        .await?;
    Ok(())
}

/// The pause release: `held → received` for the messages `ids` still held, each with its
/// `released` event, in one statement. Returns how many moved.
pub async fn release_held<'e>(db: impl PgExecutor<'e>, ids: &[Uuid]) -> Result<u64, sqlx::Error> {
    let moved = sqlx::query(
        "WITH moved AS (
             UPDATE comms.messages SET delivery_state = 'received', updated_at = now()
             WHERE id = ANY($1) AND delivery_state = 'held'
             RETURNING id, source, owner)
         INSERT INTO comms.message_events (message_id, event_type, actor, source, owner, reason, recovery_rule)
         SELECT id, 'released', 'comms-fleet', source, owner,
                'the pause that held it ended; released in creation order',
                'goes through preflight, rate limits and the pause check again'
         FROM moved",
    )
    .bind(ids)
    .execute(db)
    .await?;
    Ok(moved.rows_affected())
}

/// An approval decision's move of message `id` (`received` to be sent, or `blocked`); the caller
/// holds the row locked in `awaiting_approval` and writes the decision's event.
pub async fn decide_approval<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
    to: DeliveryState,
    failure_reason: Option<&str>,
    next_action: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE comms.messages SET delivery_state = $2,
             failure_reason = COALESCE($3, failure_reason), next_action = $4, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(to.as_str())
    .bind(failure_reason)
    .bind(next_action)
    .execute(db)
    .await?;
    Ok(())
}

/// Erasure: cancels every message of `contacts` that has not gone out (a dispatchable state),
/// each with its `cancelled` event, and closes the open tasks about them. Returns how many.
pub async fn cancel_erased<'e>(
    db: impl PgExecutor<'e>,
    contacts: &[Uuid],
) -> Result<u64, sqlx::Error> {
    let waiting = names(DeliveryState::DISPATCHABLE);
    let cancelled = sqlx::query(
        "WITH c AS (
             UPDATE comms.messages SET delivery_state = 'cancelled', failure_reason = 'erased',
                 next_action = NULL, updated_at = now()
             WHERE contact_id = ANY($1) AND delivery_state = ANY($2)
             RETURNING id, source, owner),
         closed AS (
             UPDATE comms.tasks SET state = 'cancelled', done_at = now(), done_by = 'privacy'
             WHERE state = 'open' AND message_id IN (SELECT id FROM c))
         INSERT INTO comms.message_events (message_id, event_type, actor, source, owner, reason, recovery_rule)
         SELECT id, 'cancelled', 'privacy', source, owner, 'erased: the recipient''s personal data was erased',
                'never sent; a new request needs the person''s address again'
         FROM c",
    )
    .bind(contacts)
    .bind(&waiting)
    .execute(db)
    .await?;
    Ok(cancelled.rows_affected())
}

/// A sequence's rollback: cancels the step messages of `enrolments` that have not gone out yet
/// (a quiet-hours deferral, a hold, a retry), each with a `cancelled` event, and closes the open
/// tasks about them. Returns how many.
pub async fn cancel_sequence_unsent<'e>(
    db: impl PgExecutor<'e>,
    enrolments: &[Uuid],
    reason: &str,
    actor: &str,
) -> Result<u64, sqlx::Error> {
    let unsent = names(DeliveryState::DISPATCHABLE);
    let done = sqlx::query(
        "WITH cancelled AS (
             UPDATE comms.messages m SET delivery_state = 'cancelled',
                 failure_reason = 'sequence_rolled_back', next_action = NULL, updated_at = now()
             FROM comms.sequence_sends s
             WHERE s.enrolment_id = ANY($1) AND m.idempotency_key = s.idempotency_key
               AND m.delivery_state = ANY($4)
             RETURNING m.id, m.owner),
         closed AS (
             UPDATE comms.tasks SET state = 'cancelled', done_at = now(), done_by = $3
             WHERE state = 'open' AND message_id IN (SELECT id FROM cancelled))
         INSERT INTO comms.message_events (message_id, event_type, actor, source, owner, reason)
         SELECT id, 'cancelled', $3, 'comms-sequences', owner, 'sequence_rolled_back: ' || $2
         FROM cancelled",
    )
    .bind(enrolments)
    .bind(reason)
    .bind(actor)
    .bind(&unsent)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Writes `sequence_exited` with the reason into the timeline of the enrolment's latest step
/// message (none when no step was sent yet: the reason is then on the enrolment only).
pub async fn sequence_exited<'e>(
    db: impl PgExecutor<'e>,
    enrolment: Uuid,
    reason: &str,
    detail: &str,
    actor: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.message_events (message_id, event_type, actor, source, owner, reason, detail)
         SELECT m.id, 'sequence_exited', $3, 'comms-sequences', e.owner, $2,
                jsonb_build_object('enrolment', e.id, 'sequence', e.sequence_name,
                                   'version', e.sequence_version, 'detail', $4::text)
         FROM comms.sequence_enrolments e
         JOIN comms.sequence_sends s ON s.enrolment_id = e.id
         JOIN comms.messages m ON m.idempotency_key = s.idempotency_key
         WHERE e.id = $1 ORDER BY s.step DESC LIMIT 1",
    )
    .bind(enrolment)
    .bind(reason)
    .bind(actor)
    .bind(detail)
    .execute(db)
    .await?;
    Ok(())
}

/// A one-click unsubscribe: the `opted_out` entry on the contact's latest message on `channel`
/// (a contact-level entry when there is none).
pub async fn unsubscribed<'e>(
    db: impl PgExecutor<'e>,
    contact_id: Uuid,
    channel: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.message_events (message_id, event_type, actor, source, reason, recovery_rule, detail)
         SELECT (SELECT id FROM comms.messages WHERE contact_id = $1 AND channel = $2 ORDER BY created_at DESC LIMIT 1),
                'opted_out', 'comms-gateway', 'one-click unsubscribe', 'List-Unsubscribe-Post',
                'never sent to on this channel until the contact opts back in',
                jsonb_build_object('contact_id', $1::text, 'channel', $2::text)",
    )
    .bind(contact_id)
    .bind(channel)
    .execute(db)
    .await?;
    Ok(())
}
