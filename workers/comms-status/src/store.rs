//! Applying one status event: one transaction that finds and locks the message, records the
//! callback under its dedupe key, moves the delivery state forward (never back), records consent
//! changes on the contact and the message, appends the timeline events, keeps the raw payload in
//! `internal.provider_payloads`, and opens an owner task where a person must act.
//!
//! The row lock serialises concurrent callbacks of one message, so "forward only" is decided on
//! the state as it is, not as it was when the callback was read. The unique dedupe key makes a
//! second delivery of the same callback a no-op.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::event::{ConsentChange, ProviderEvent, Target, advance};

/// The actor of every event and task this worker writes.
pub const ACTOR: &str = "comms-status";

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Recorded; `moved_to` is the new delivery state if it changed.
    Recorded {
        message_id: Uuid,
        moved_to: Option<&'static str>,
    },
    /// This exact event was applied before: nothing changed.
    Duplicate,
    /// No message matches (yet).
    Unknown,
    /// The message exists but the sender has not recorded its dispatch yet.
    NotYetSent,
}

#[derive(Debug, sqlx::FromRow)]
struct Matched {
    id: Uuid,
    channel: String,
    contact_id: Uuid,
    owner: String,
    record_type: String,
    record_id: Uuid,
    delivery_state: String,
    provider_message_id: Option<String>,
}

const COLUMNS: &str =
    "id, channel, contact_id, owner, record_type, record_id, delivery_state, provider_message_id";

async fn find(
    tx: &mut Transaction<'_, Postgres>,
    event: &ProviderEvent,
) -> Result<Option<Matched>, sqlx::Error> {
    let lookup = &event.lookup;
    if let Some(id) = lookup.message_id {
        let found = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM comms.messages WHERE id = $1 FOR UPDATE"
        ))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    if let Some(provider_id) = &lookup.provider_message_id {
        let found = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM comms.messages
             WHERE provider = $1 AND provider_message_id = $2 FOR UPDATE"
        ))
        .bind(event.provider.as_str())
        .bind(provider_id)
        .fetch_optional(&mut **tx)
        .await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    if let Some(address) = &lookup.recipient {
        return sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM comms.messages
             WHERE provider = $1 AND channel = $2 AND lower(recipient_address) = lower($3)
             ORDER BY dispatched_at DESC NULLS LAST LIMIT 1 FOR UPDATE"
        ))
        .bind(event.provider.as_str())
        .bind(event.provider.channel())
        .bind(address)
        .fetch_optional(&mut **tx)
        .await;
    }
    Ok(None)
}

/// Applies `event`, first seen by the gateway at `received_at`.
pub async fn apply(
    pool: &PgPool,
    event: &ProviderEvent,
    received_at: DateTime<Utc>,
) -> Result<Applied, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(message) = find(&mut tx, event).await? else {
        tx.rollback().await?;
        return Ok(Applied::Unknown);
    };
    if message.delivery_state == "sending" {
        tx.rollback().await?;
        return Ok(Applied::NotYetSent);
    }
    let fresh: Option<i64> = sqlx::query_scalar(
        "INSERT INTO comms.delivery_callbacks (provider, event_key, message_id, channel, status, received_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (provider, event_key) DO NOTHING RETURNING id",
    )
    .bind(event.provider.as_str())
    .bind(&event.event_key)
    .bind(message.id)
    .bind(&message.channel)
    .bind(&event.status)
    .bind(received_at)
    .fetch_optional(&mut *tx)
    .await?;
    if fresh.is_none() {
        tx.rollback().await?;
        return Ok(Applied::Duplicate);
    }

    let moved = event
        .effective_target()
        .and_then(|target| advance(&message.delivery_state, target));
    if let Some(target) = moved {
        let (failure_reason, next_action) =
            if target.is_failure() {
                (
                    Some(event.reason.clone().unwrap_or_else(|| {
                        format!("{} {}", event.provider.as_str(), event.status)
                    })),
                    event.next_action,
                )
            } else {
                (None, None)
            };
        sqlx::query(
            "UPDATE comms.messages SET delivery_state = $2,
                 failure_reason = COALESCE($3, failure_reason),
                 next_action = $4,
                 delivered_at = CASE WHEN $2 = 'delivered' THEN COALESCE(delivered_at, $5) ELSE delivered_at END,
                 dispatched_at = CASE WHEN $2 = 'sent' THEN COALESCE(dispatched_at, now()) ELSE dispatched_at END,
                 updated_at = now()
             WHERE id = $1",
        )
        .bind(message.id)
        .bind(target.as_str())
        .bind(&failure_reason)
        .bind(next_action)
        .bind(received_at)
        .execute(&mut *tx)
        .await?;
    }

    let event_type = match moved {
        Some(target) => target.as_str(),
        None if event.engagement => "engagement",
        None => "provider_status",
    };
    let verb = match moved {
        Some(target) => format!("{} → {}", message.delivery_state, target.as_str()),
        None => format!("no change ({})", message.delivery_state),
    };
    let reason = match &event.reason {
        Some(why) => format!(
            "{} {}: {verb}; {why}",
            event.provider.as_str(),
            event.status
        ),
        None => format!("{} {}: {verb}", event.provider.as_str(), event.status),
    };
    let recovery = moved
        .filter(|t| t.is_failure())
        .map(|_| "not retried; the owner decides (send again with a new idempotency key)");
    let mut detail = event.detail.clone();
    if let Some(fields) = detail.as_object_mut() {
        fields.insert("from".into(), json!(message.delivery_state));
        fields.insert("to".into(), json!(moved.map(|t| t.as_str())));
    }
    append_event(
        &mut tx, &message, event, event_type, &reason, recovery, detail,
    )
    .await?;

    if let Some(change) = event.consent {
        record_consent(&mut tx, &message, event, change).await?;
    }
    let wants_owner =
        moved.is_some_and(|t| t.is_failure()) || event.consent.is_some() || event.needs_owner;
    if wants_owner && let Some(next_action) = event.next_action {
        open_task(&mut tx, &message, event, moved, next_action, &reason).await?;
    }

    sqlx::query(
        "INSERT INTO internal.provider_payloads (provider, kind, message_id, provider_message_id, payload)
         VALUES ($1, 'status', $2, $3, $4)",
    )
    .bind(event.provider.as_str())
    .bind(message.id)
    .bind(
        event
            .lookup
            .provider_message_id
            .as_ref()
            .or(message.provider_message_id.as_ref()),
    )
    .bind(&event.raw)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Applied::Recorded {
        message_id: message.id,
        moved_to: moved.map(|t| t.as_str()),
    })
}

/// A task for the message's owner: the next action, due within a day.
async fn open_task(
    tx: &mut Transaction<'_, Postgres>,
    message: &Matched,
    event: &ProviderEvent,
    moved: Option<Target>,
    next_action: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let title = match (event.consent, moved) {
        (Some(ConsentChange::OptedOut), _) => "Recipient opted out".to_string(),
        (Some(ConsentChange::Suppressed), _) => "Address suppressed".to_string(),
        (None, Some(target)) if target.is_failure() => format!("Message {}", target.as_str()),
        _ => format!("Provider event: {}", event.status),
    };
    sqlx::query(
        "INSERT INTO comms.tasks (owner, title, next_action, reason, due_at, record_type, record_id, message_id)
         VALUES ($1, $2, $3, $4, now() + interval '24 hours', $5, $6, $7)",
    )
    .bind(&message.owner)
    .bind(&title)
    .bind(next_action)
    .bind(reason)
    .bind(&message.record_type)
    .bind(message.record_id)
    .bind(message.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn append_event(
    tx: &mut Transaction<'_, Postgres>,
    message: &Matched,
    event: &ProviderEvent,
    event_type: &str,
    reason: &str,
    recovery: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.message_events
             (message_id, event_type, actor, source, owner, reason, recovery_rule, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(message.id)
    .bind(event_type)
    .bind(ACTOR)
    .bind(event.provider.as_str())
    .bind(&message.owner)
    .bind(reason)
    .bind(recovery)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Puts the address on the suppression list or records the opt-out, on the contact's channel and
/// on the message. An opt-out is never downgraded to a suppression.
async fn record_consent(
    tx: &mut Transaction<'_, Postgres>,
    message: &Matched,
    event: &ProviderEvent,
    change: ConsentChange,
) -> Result<(), sqlx::Error> {
    let source = format!("{} {}", event.provider.as_str(), event.status);
    sqlx::query(
        "UPDATE comms.contact_channels SET consent_state = $3, consent_basis = 'provider',
             consent_source = $4, consent_at = now(), updated_at = now()
         WHERE contact_id = $1 AND channel = $2
           AND consent_state <> $3
           AND NOT ($3 = 'suppressed' AND consent_state = 'opted_out')",
    )
    .bind(message.contact_id)
    .bind(&message.channel)
    .bind(change.as_str())
    .bind(&source)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE comms.messages SET opt_out_state = $2, updated_at = now()
         WHERE id = $1 AND opt_out_state <> $2 AND NOT ($2 = 'suppressed' AND opt_out_state = 'opted_out')",
    )
    .bind(message.id)
    .bind(change.as_str())
    .execute(&mut **tx)
    .await?;
    let (event_type, recovery) = match change {
        ConsentChange::Suppressed => (
            "suppressed",
            "never sent to on this channel again until the contact gives a working address",
        ),
        ConsentChange::OptedOut => (
            "opted_out",
            "never sent to on this channel again unless the contact opts back in",
        ),
    };
    let reason = format!(
        "{source}: the {} address is now {}",
        message.channel,
        change.as_str()
    );
    let detail = json!({ "provider_status": event.status, "consent_state": change.as_str() });
    append_event(
        tx,
        message,
        event,
        event_type,
        &reason,
        Some(recovery),
        detail,
    )
    .await
}
