//! The pause switch as the sender consults it, immediately before every provider call.
//!
//! The stored switch is the truth; this reads it in the same moment the dispatch is decided, at
//! every scope that covers the message (global, channel, kind, the message's client). A read
//! that fails is treated as "paused" by the caller: the message waits, it is never sent blind.

use sqlx::PgPool;
use uuid::Uuid;

use crate::store::Message;

/// The pause that covers a message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActivePause {
    pub id: Uuid,
    pub scope: String,
    pub scope_value: String,
    pub reason: String,
    pub actor: String,
}

/// The oldest active pause covering `message`, if any.
pub async fn covering(
    pool: &PgPool,
    message: &Message,
) -> Result<Option<ActivePause>, sqlx::Error> {
    let client = message.client_id.map(|c| c.to_string()).unwrap_or_default();
    sqlx::query_as(
        "SELECT id, scope, scope_value, reason, actor FROM comms.pauses
         WHERE (expires_at IS NULL OR expires_at > now())
           AND (scope = 'global'
                OR (scope = 'channel' AND scope_value = $1)
                OR (scope = 'kind' AND scope_value = $2)
                OR (scope = 'client' AND scope_value = $3 AND $3 <> ''))
         ORDER BY started_at LIMIT 1",
    )
    .bind(&message.channel)
    .bind(&message.kind)
    .bind(client)
    .fetch_optional(pool)
    .await
}
