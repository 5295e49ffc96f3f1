//! Who read what: every read of personal data with full addresses is recorded in
//! `comms.access_log` (who, through what, which message or contact, why when given, when) before
//! the data is returned, in the same transaction. `commsctl audit access` lists it.
//!
//! Listings mask addresses ([`super::mask_address`]); only [`reveal`] returns them in full, and
//! it cannot do so without writing its record first.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Through what the data was read (the `via` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Commsctl,
    AdminApi,
    Console,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Commsctl => "commsctl",
            Via::AdminApi => "admin_api",
            Via::Console => "console",
        }
    }
}

/// One read, as it is recorded.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    pub who: &'a str,
    pub via: Via,
    /// What was read, in a few words (`message recipient and body`, `search by address`).
    pub what: &'a str,
    pub message_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    pub why: Option<&'a str>,
}

/// Records `access` on its own (a read whose data is not returned by [`reveal`], like a search).
pub async fn record(pool: &PgPool, access: &Access<'_>) -> Result<(), sqlx::Error> {
    insert(pool, access).await
}

async fn insert<'e, E>(executor: E, access: &Access<'_>) -> Result<(), sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let why = access.why.map(str::trim).filter(|w| !w.is_empty());
    sqlx::query(
        "INSERT INTO comms.access_log (who, via, what, message_id, contact_id, why)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(access.who)
    .bind(access.via.as_str())
    .bind(access.what)
    .bind(access.message_id)
    .bind(access.contact_id)
    .bind(why)
    .execute(executor)
    .await?;
    Ok(())
}

/// A message's personal content, in full.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Revealed {
    pub message_id: Uuid,
    pub contact_id: Uuid,
    pub contact_name: Option<String>,
    pub recipient_address: String,
    pub subject: Option<String>,
    pub body: Option<String>,
    /// When retention or an erasure removed the content (then there is nothing to reveal).
    pub content_removed_at: Option<DateTime<Utc>>,
}

/// The full recipient and content of message `message_id`, recorded as read by `access` (its
/// `message_id` and `contact_id` are filled in here). `None` when there is no such message.
pub async fn reveal(
    pool: &PgPool,
    message_id: Uuid,
    access: &Access<'_>,
) -> Result<Option<Revealed>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let found: Option<Revealed> = sqlx::query_as(
        "SELECT m.id AS message_id, m.contact_id, c.name AS contact_name, m.recipient_address,
                m.subject, m.body, m.content_removed_at
         FROM comms.messages m JOIN comms.contacts c ON c.id = m.contact_id
         WHERE m.id = $1",
    )
    .bind(message_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(found) = found else {
        return Ok(None);
    };
    let recorded = Access {
        message_id: Some(found.message_id),
        contact_id: Some(found.contact_id),
        ..access.clone()
    };
    insert(&mut *tx, &recorded).await?;
    tx.commit().await?;
    Ok(Some(found))
}

/// One recorded read.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AccessEntry {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub who: String,
    pub via: String,
    pub what: String,
    pub message_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    pub why: Option<String>,
}

/// Which reads to list; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    pub who: Option<String>,
    pub contact: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// Recorded reads, newest first.
pub async fn list(pool: &PgPool, filter: &AccessFilter) -> Result<Vec<AccessEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, occurred_at, who, via, what, message_id, contact_id, why
         FROM comms.access_log
         WHERE ($1::text IS NULL OR who = $1)
           AND ($2::uuid IS NULL OR contact_id = $2)
           AND ($3::timestamptz IS NULL OR occurred_at >= $3)
         ORDER BY occurred_at DESC, id DESC
         LIMIT $4",
    )
    .bind(&filter.who)
    .bind(filter.contact)
    .bind(filter.since)
    .bind(filter.limit.clamp(1, 10_000))
    .fetch_all(pool)
    .await
}
