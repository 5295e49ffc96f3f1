//! The provider call of a claimed message: its mark, and the release of a claim whose call never
//! started. Together they make the window of `dispatch_outcome_unknown` start at the call, not
//! at the claim (docs/reliability.md#the-window-of-dispatch_outcome_unknown).
//!
//! A claim (`sending`) and the start of its provider call are two facts. A process that dies
//! before its claim commits has recorded nothing; one that dies after may have called. Both
//! paths therefore write the call's mark (`call_started_at`) in the claim itself and call the
//! provider right after its commit, with nothing awaited in between: the one-message path's
//! claim ([`super::Transition::call_started`]) and the group path's record-and-claim and
//! released claim ([`super::record::record_and_claim`], [`super::batch::claim_released`]).
//!
//! A message found in `sending` without a mark was claimed by a sender of an earlier version,
//! which claimed and marked in two statements and died between them: nothing was sent. It is
//! released ([`release_unstarted`]) and sent again through the normal path, with its idempotency
//! key, never twice: the release is conditional on the claim still holding the message with no
//! mark, under the row's lock.

use sqlx::PgExecutor;
use uuid::Uuid;

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

/// Releases every message still held by `claim`, whose caller made no provider call for it: its
/// claim statement (or that statement's `COMMIT`) failed with an error that leaves open whether
/// it committed — a connection cut right after the commit reached the server. Each goes back to
/// `retrying` with the claim's attempt given back and its mark cleared, with a
/// `dispatch_released` event written by `actor`; the caller's delivery is then tried again and
/// sends it through the normal path. Returns how many were released (none when the claim never
/// committed).
pub async fn release_uncalled<'e>(
    db: impl PgExecutor<'e>,
    claim: Uuid,
    actor: &str,
) -> Result<u64, sqlx::Error> {
    let released: i64 = sqlx::query_scalar(
        "WITH moved AS (
             UPDATE comms.messages SET delivery_state = 'retrying', dispatch_claim = NULL,
                 call_started_at = NULL, attempt_count = greatest(attempt_count - 1, 0),
                 updated_at = now()
             WHERE dispatch_claim = $1 AND delivery_state = 'sending'
             RETURNING id, source, owner),
         event AS (
             INSERT INTO comms.message_events
                 (message_id, event_type, actor, source, owner, reason, recovery_rule, detail)
             SELECT id, 'dispatch_released', $2, source, owner,
                 'claimed for dispatch, but the claim''s commit was not confirmed: no provider call was made',
                 'decided and sent again through the normal path, with its idempotency key',
                 jsonb_build_object('claim', $1::text)
             FROM moved)
         SELECT count(*) FROM moved",
    )
    .bind(claim)
    .bind(actor)
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(released).unwrap_or_default())
}
