//! The portal "provider": publishing is writing the portal update record the portal reads.
//! It is idempotent on the message id, so a retry never shows an update twice.

use sqlx::PgPool;

use super::{Dispatch, Outbound};

pub async fn publish(pool: &PgPool, message: &Outbound) -> Dispatch {
    let result: Result<Option<uuid::Uuid>, sqlx::Error> = sqlx::query_scalar(
        "INSERT INTO comms.portal_updates (message_id, contact_id, client_id, kind, subject, body)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (message_id) DO UPDATE SET message_id = EXCLUDED.message_id
         RETURNING id",
    )
    .bind(message.message_id)
    .bind(message.contact_id)
    .bind(message.client_id)
    .bind(&message.kind)
    .bind(&message.subject)
    .bind(&message.body)
    .fetch_optional(pool)
    .await;
    match result {
        Ok(Some(id)) => Dispatch::Sent {
            provider: "portal",
            provider_message_id: id.to_string(),
        },
        Ok(None) => Dispatch::Transient {
            reason: "portal update was not written".into(),
            retry_after: None,
            maybe_sent: false,
        },
        Err(e) => Dispatch::Transient {
            reason: format!("portal database: {e}"),
            retry_after: None,
            maybe_sent: false,
        },
    }
}
