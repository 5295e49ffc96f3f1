//! One message and its whole timeline, as operators see it: `commsctl message` prints it and the
//! gateway's console renders it, so both read the same columns in the same order.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// A message's state, without its content or recipient.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MessageSummary {
    pub id: Uuid,
    pub idempotency_key: String,
    pub channel: String,
    pub kind: String,
    pub owner: String,
    pub source: String,
    pub record_type: String,
    pub record_id: Uuid,
    pub delivery_state: String,
    pub reply_state: String,
    pub failure_reason: Option<String>,
    pub next_action: Option<String>,
    pub attempt_count: i32,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub sms_encoding: Option<String>,
    pub sms_segments: Option<i32>,
    pub created_at: DateTime<Utc>,
}

/// One step of a message's history (`comms.message_events`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TimelineEntry {
    pub occurred_at: DateTime<Utc>,
    pub event_type: String,
    pub actor: String,
    pub reason: Option<String>,
    pub recovery_rule: Option<String>,
}

/// A message with its events in the order they happened.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub message: MessageSummary,
    /// The contact the message is for.
    pub contact_id: Uuid,
    /// The recipient's address, masked: the full value needs a recorded reveal
    /// ([`crate::privacy::access::reveal`]).
    pub recipient: String,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(sqlx::FromRow)]
struct Found {
    #[sqlx(flatten)]
    message: MessageSummary,
    contact_id: Uuid,
    recipient_address: String,
}

/// The columns of [`MessageSummary`], for queries that list messages.
pub const SUMMARY_COLUMNS: &str = "id, idempotency_key, channel, kind, owner, source, record_type,
    record_id, delivery_state, reply_state, failure_reason, next_action, attempt_count, provider,
    provider_message_id, sms_encoding, sms_segments, created_at";

/// Finds a message by id or idempotency key, with its events in order.
pub async fn view(pool: &PgPool, reference: &str) -> Result<Option<MessageView>, sqlx::Error> {
    let id = reference.parse::<Uuid>().ok();
    let found: Option<Found> = sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS}, contact_id, recipient_address FROM comms.messages
         WHERE id = $1 OR idempotency_key = $2"
    ))
    .bind(id)
    .bind(reference)
    .fetch_optional(pool)
    .await?;
    let Some(Found {
        message,
        contact_id,
        recipient_address,
    }) = found
    else {
        return Ok(None);
    };
    let timeline = sqlx::query_as(
        "SELECT occurred_at, event_type, actor, reason, recovery_rule FROM comms.message_events
         WHERE message_id = $1 ORDER BY id",
    )
    .bind(message.id)
    .fetch_all(pool)
    .await?;
    Ok(Some(MessageView {
        message,
        contact_id,
        recipient: crate::privacy::mask_address(&recipient_address),
        timeline,
    }))
}
