//! Upstream apps hear back: message status over HTTP scoped to the app, lifecycle events through
//! the transactional outbox, and signed webhooks out (docs/upstream.md).

mod outbox;
mod status_api;
mod webhooks;

use sqlx::PgPool;
use uuid::Uuid;

/// A message as the sender would have recorded it, with the given key, source and state.
pub async fn recorded(pool: &PgPool, key: &str, source: &str, state: &str) -> Uuid {
    let contact: Uuid =
        sqlx::query_scalar("INSERT INTO comms.contacts (name) VALUES ('Dana') RETURNING id")
            .fetch_one(pool)
            .await
            .expect("contact");
    sqlx::query_scalar(
        "INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address,
             owner, source, trigger, record_type, record_id, template_name, body, request,
             delivery_state)
         VALUES ($1, 'sms', 'transactional', $2, '+14155552671', 'ana', $3, 'test', 'client',
             gen_random_uuid(), 'welcome', 'Hello Dana, your code is 4711', '{}'::jsonb, $4)
         RETURNING id",
    )
    .bind(key)
    .bind(contact)
    .bind(source)
    .bind(state)
    .fetch_one(pool)
    .await
    .expect("message")
}

/// Appends a timeline event, as every worker does.
pub async fn event(pool: &PgPool, message: Uuid, event_type: &str, reason: Option<&str>) {
    sqlx::query(
        "INSERT INTO comms.message_events (message_id, event_type, actor, source, reason)
         VALUES ($1, $2, 'test', 'test', $3)",
    )
    .bind(message)
    .bind(event_type)
    .bind(reason)
    .execute(pool)
    .await
    .expect("event");
}
