//! The provider call of a claimed message: its mark, and the release of a claim whose call never
//! started. Together they make the window of `dispatch_outcome_unknown` start at the call, not
//! at the claim (docs/reliability.md#the-window-of-dispatch_outcome_unknown).
//!
//! A claim (`sending`) and the start of its provider call are two facts. A process that dies
//! between them has sent nothing; one that dies after may have. So the sender marks the call
//! ([`mark_started`]) and waits for that commit before any byte goes to a provider, and a message
//! later found in `sending` without a mark is released ([`release_unstarted`]) and sent again
//! through the normal path, with its idempotency key. It is never sent twice: the mark and the
//! release are each conditional on the same claim holding the message with no mark yet, so
//! PostgreSQL lets exactly one of them happen (the second waits for the first's row lock, then
//! finds its condition false). A dispatch whose mark lost does not call the provider.

use sqlx::PgExecutor;
use uuid::Uuid;

/// Marks the provider calls of the messages `ids`, held by `claim`, as started, in one statement
/// (a group's calls start together). Returns the ids it marked: only those may be sent. One not
/// among them was released meanwhile (a redelivery of it is sending it again) or left `sending`.
///
/// Only `call_started_at` changes (not `updated_at`, which is indexed), so the update can stay
/// on its page.
pub async fn mark_started<'e>(
    db: impl PgExecutor<'e>,
    claim: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE comms.messages SET call_started_at = now()
         WHERE id = ANY($1) AND dispatch_claim = $2 AND delivery_state = 'sending'
           AND call_started_at IS NULL
         RETURNING id",
    )
    .bind(ids)
    .bind(claim)
    .fetch_all(db)
    .await
}

/// Releases message `id` from `claim`, whose provider call never started (its process stopped
/// before the mark): back to `retrying` with the claim's attempt given back, its
/// `dispatch_released` event written by `actor`, so the caller decides and sends it again through
/// the normal path. Returns whether it was released; `false` when the call was marked meanwhile,
/// or the message moved on.
pub async fn release_unstarted<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
    claim: Uuid,
    actor: &str,
) -> Result<bool, sqlx::Error> {
    let released: Option<Uuid> = sqlx::query_scalar(
        "WITH moved AS (
             UPDATE comms.messages SET delivery_state = 'retrying', dispatch_claim = NULL,
                 attempt_count = greatest(attempt_count - 1, 0), updated_at = now()
             WHERE id = $1 AND dispatch_claim = $2 AND delivery_state = 'sending'
               AND call_started_at IS NULL
             RETURNING id, source, owner),
         event AS (
             INSERT INTO comms.message_events
                 (message_id, event_type, actor, source, owner, reason, recovery_rule, detail)
             SELECT id, 'dispatch_released', $3, source, owner,
                 'claimed for dispatch by a process that stopped before calling the provider: nothing was sent',
                 'decided and sent again through the normal path, with its idempotency key',
                 jsonb_build_object('claim', $2::text)
             FROM moved)
         SELECT id FROM moved",
    )
    .bind(id)
    .bind(claim)
    .bind(actor)
    .fetch_optional(db)
    .await?;
    Ok(released.is_some())
}
