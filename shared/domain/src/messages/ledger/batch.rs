//! The group paths' writes: one statement (`unnest` of column arrays) for a whole group, so a
//! group of a hundred costs what one message does. The sender's claims of released messages and
//! `sent` outcomes, and the status worker's moves and timeline entries.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::messages::DeliveryState;
use crate::messages::ledger::record::{Content, RECORDED_COLUMNS, Recorded};

/// One provider acceptance to record.
pub struct Accepted {
    pub message_id: Uuid,
    pub provider: &'static str,
    /// The provider's name in the channel's order (`twilio_secondary`, …), kept in the event.
    pub via: &'static str,
    pub provider_message_id: String,
    pub attempt: i32,
}

/// Moves each accepted message from `sending` to `sent` with the provider's id and its `sent`
/// event written by `actor`. Returns how many moved (a message no longer `sending` is left as it
/// is). The rows are given in id order — the order the status worker locks them in — so the two
/// wait for each other rather than deadlock over a callback that arrives while its message is
/// being recorded (should PostgreSQL still pick another order and detect a deadlock, each side
/// falls back to recording its messages one by one).
pub async fn mark_sent<'e>(
    db: impl PgExecutor<'e>,
    accepted: &[Accepted],
    actor: &str,
) -> Result<u64, sqlx::Error> {
    let mut accepted: Vec<&Accepted> = accepted.iter().collect();
    accepted.sort_by_key(|a| a.message_id);
    let ids: Vec<Uuid> = accepted.iter().map(|a| a.message_id).collect();
    let providers: Vec<&str> = accepted.iter().map(|a| a.provider).collect();
    let provider_ids: Vec<&str> = accepted
        .iter()
        .map(|a| a.provider_message_id.as_str())
        .collect();
    let attempts: Vec<i32> = accepted.iter().map(|a| a.attempt).collect();
    let vias: Vec<&str> = accepted.iter().map(|a| a.via).collect();
    let result = sqlx::query(
        "WITH u AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $6::text[])
                 WITH ORDINALITY AS u(id, provider, provider_message_id, attempt, via, ord)),
         moved AS (
             UPDATE comms.messages m SET delivery_state = 'sent', next_action = NULL,
                 failure_reason = NULL,
                 provider = u.provider, provider_message_id = u.provider_message_id,
                 dispatched_at = now(), updated_at = now()
             FROM u WHERE m.id = u.id AND m.delivery_state = 'sending'
             RETURNING m.id, m.source, m.owner, u.provider, u.provider_message_id, u.attempt, u.via, u.ord)
         INSERT INTO comms.message_events (message_id, event_type, actor, source, owner, reason, detail)
         SELECT id, 'sent', $5, source, owner,
             'accepted by ' || provider || CASE WHEN via = provider THEN '' ELSE ' (' || via || ')' END,
             jsonb_build_object('provider_message_id', provider_message_id, 'attempt', attempt, 'provider', via)
         FROM moved ORDER BY ord",
    )
    .bind(&ids)
    .bind(&providers)
    .bind(&provider_ids)
    .bind(&attempts)
    .bind(actor)
    .bind(&vias)
    .execute(db)
    .await?;
    Ok(result.rows_affected())
}

/// A released message of a group, ready to be claimed: its rendered content and the provider
/// account it will go through.
pub struct ReleasedClaim<'a> {
    pub message_id: Uuid,
    pub content: Content<'a>,
    pub client_id: Option<Uuid>,
    pub account: &'a str,
}

/// Claims each released message (`received` after a pause's release) for dispatch by `claim` in
/// one statement: `sending`, one more attempt, its call marked as started (the caller calls
/// right after this returns), its rendered content stored, its `dispatching` event with
/// `recovery`. Like [`super::record::record_and_claim`], the statement runs in a transaction
/// only this process's `COMMIT` ends, so a process that dies before it claimed nothing. Rows are
/// locked in id order (as [`mark_sent`] does). Returns the messages it claimed; one that is no
/// longer `received` — another delivery of it got there first — is not among them.
pub async fn claim_released(
    pool: &PgPool,
    claims: &[ReleasedClaim<'_>],
    claim: Uuid,
    actor: &str,
    recovery: &str,
) -> Result<Vec<Recorded>, sqlx::Error> {
    let mut claims: Vec<&ReleasedClaim<'_>> = claims.iter().collect();
    claims.sort_by_key(|c| c.message_id);
    let column = |f: fn(&ReleasedClaim<'_>) -> Option<String>| -> Vec<Option<String>> {
        claims.iter().map(|c| f(c)).collect()
    };
    let ids: Vec<Uuid> = claims.iter().map(|c| c.message_id).collect();
    let versions: Vec<i32> = claims.iter().map(|c| c.content.template_version).collect();
    let segments: Vec<Option<i32>> = claims.iter().map(|c| c.content.sms_segments).collect();
    let clients: Vec<Option<Uuid>> = claims.iter().map(|c| c.client_id).collect();
    let mut claiming = pool.begin().await?;
    let claimed = sqlx::query_as(&format!(
        "WITH u AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[],
                 $6::int[], $7::uuid[], $8::text[])
                 WITH ORDINALITY AS u(id, subject, body, template_version, sms_encoding,
                     sms_segments, client_id, account, ord)),
         moved AS (
             UPDATE comms.messages m SET delivery_state = 'sending',
                 attempt_count = m.attempt_count + 1, subject = u.subject, body = u.body,
                 template_version = u.template_version, sms_encoding = u.sms_encoding,
                 sms_segments = u.sms_segments, client_id = u.client_id, dispatch_claim = $11,
                 call_started_at = now(), updated_at = now()
             FROM u WHERE m.id = u.id AND m.delivery_state = 'received'
             RETURNING m.*, u.account, u.ord),
         e AS (
             INSERT INTO comms.message_events
                 (message_id, event_type, actor, source, owner, reason, recovery_rule)
             SELECT id, 'dispatching', $9, source, owner, 'dispatching through ' || account, $10
             FROM moved ORDER BY ord)
         SELECT {RECORDED_COLUMNS} FROM moved"
    ))
    .bind(&ids)
    .bind(column(|c| c.content.subject.map(str::to_string)))
    .bind(column(|c| Some(c.content.body.to_string())))
    .bind(&versions)
    .bind(column(|c| c.content.sms_encoding.map(str::to_string)))
    .bind(&segments)
    .bind(&clients)
    .bind(column(|c| Some(c.account.to_string())))
    .bind(actor)
    .bind(recovery)
    .bind(claim)
    .fetch_all(&mut *claiming)
    .await?;
    claiming.commit().await?;
    Ok(claimed)
}

/// Every move a group of provider callbacks makes to one message, folded into one update.
pub struct CallbackMove {
    pub message_id: Uuid,
    pub to: DeliveryState,
    pub failure_reason: Option<String>,
    pub next_action: Option<&'static str>,
    /// Set by a move to `delivered`: when the callback said so (kept if already set).
    pub delivered_at: Option<DateTime<Utc>>,
    /// Set by a move to `sent`: `dispatched_at` is set if it was not.
    pub dispatched: bool,
}

/// Applies each folded callback move (the caller decided them; see the status worker's
/// `effects::decide`).
pub async fn apply_callback_moves<'e>(
    db: impl PgExecutor<'e>,
    moves: &[CallbackMove],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = moves.iter().map(|m| m.message_id).collect();
    let states: Vec<&str> = moves.iter().map(|m| m.to.as_str()).collect();
    let reasons: Vec<Option<&str>> = moves.iter().map(|m| m.failure_reason.as_deref()).collect();
    let next_actions: Vec<Option<&str>> = moves.iter().map(|m| m.next_action).collect();
    let delivered: Vec<Option<DateTime<Utc>>> = moves.iter().map(|m| m.delivered_at).collect();
    let dispatched: Vec<bool> = moves.iter().map(|m| m.dispatched).collect();
    sqlx::query(
        "UPDATE comms.messages m SET delivery_state = c.state,
             failure_reason = CASE WHEN c.state IN ('sent', 'delivered') THEN c.failure_reason
                                   ELSE COALESCE(c.failure_reason, m.failure_reason) END,
             next_action = c.next_action,
             delivered_at = COALESCE(m.delivered_at, c.delivered_at),
             dispatched_at = CASE WHEN c.dispatched THEN COALESCE(m.dispatched_at, now()) ELSE m.dispatched_at END,
             updated_at = now()
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bool[])
              AS c(id, state, failure_reason, next_action, delivered_at, dispatched)
         WHERE m.id = c.id",
    )
    .bind(&ids)
    .bind(&states)
    .bind(&reasons)
    .bind(&next_actions)
    .bind(&delivered)
    .bind(&dispatched)
    .execute(db)
    .await?;
    Ok(())
}

/// Timeline entries of a group, one array per column, in the order they are to be numbered.
#[derive(Default)]
pub struct Entries {
    pub message_ids: Vec<Uuid>,
    pub event_types: Vec<&'static str>,
    pub sources: Vec<&'static str>,
    pub owners: Vec<String>,
    pub reasons: Vec<String>,
    pub recovery_rules: Vec<Option<&'static str>>,
    pub details: Vec<serde_json::Value>,
}

/// Appends every entry of `rows`, written by `actor`, in their order.
pub async fn append_events<'e>(
    db: impl PgExecutor<'e>,
    actor: &str,
    rows: &Entries,
) -> Result<(), sqlx::Error> {
    // Ordered by position so the identity column numbers the entries in event order.
    sqlx::query(
        "INSERT INTO comms.message_events
             (message_id, event_type, actor, source, owner, reason, recovery_rule, detail)
         SELECT e.message_id, e.event_type, $1, e.source, e.owner, e.reason, e.recovery_rule, e.detail
         FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
              WITH ORDINALITY AS e(message_id, event_type, source, owner, reason, recovery_rule, detail, position)
         ORDER BY e.position",
    )
    .bind(actor)
    .bind(&rows.message_ids)
    .bind(&rows.event_types)
    .bind(&rows.sources)
    .bind(&rows.owners)
    .bind(&rows.reasons)
    .bind(&rows.recovery_rules)
    .bind(&rows.details)
    .execute(db)
    .await?;
    Ok(())
}
