//! Reading digests for operators (`commsctl digest show|list`, the admin API): one digest with
//! its content, approval, sends and views, and a list by state. Read-only queries, here so the
//! operator surfaces do not depend on the digest worker.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// One revision of a period's digest, as built.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Digest {
    pub id: Uuid,
    pub period_id: Uuid,
    pub revision: i32,
    pub client_id: Uuid,
    pub client_name: String,
    pub report_title: String,
    /// The report period the digest covers.
    pub starts_on: chrono::NaiveDate,
    pub ends_on: chrono::NaiveDate,
    pub owner: String,
    pub source: String,
    pub state: String,
    pub blocked_reason: Option<String>,
    pub stale_caveat: bool,
    pub email_subject: Option<String>,
    pub email_body: Option<String>,
    pub portal_subject: Option<String>,
    pub portal_body: Option<String>,
    pub built_at: DateTime<Utc>,
    pub approved_by: Option<String>,
    pub on_behalf_of: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub approval_seconds: Option<f64>,
    pub published_at: Option<DateTime<Utc>>,
}

/// One send request the digest handed to the sender, with where the sender's message stands.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Send {
    pub contact_id: Uuid,
    pub channel: String,
    pub idempotency_key: String,
    pub published_at: DateTime<Utc>,
    /// The sender's delivery state of the message (None until the sender recorded it).
    pub delivery_state: Option<String>,
}

/// The "report viewed" outcome: every recorded view of the digest.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Views {
    pub total: i64,
    pub contacts: i64,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
}

/// Everything `commsctl digest show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DigestView {
    #[serde(flatten)]
    pub digest: Digest,
    pub sends: Vec<Send>,
    pub views: Views,
}

const DIGEST: &str = "SELECT d.id, d.period_id, d.revision, d.client_id, c.name AS client_name,
        r.title AS report_title, p.starts_on, p.ends_on, d.owner, d.source, d.state, d.blocked_reason, d.stale_caveat,
        d.email_subject, d.email_body, d.portal_subject, d.portal_body, d.built_at,
        d.approved_by, d.on_behalf_of, d.approved_at, d.approval_seconds, d.published_at
    FROM comms.digests d
    JOIN comms.clients c ON c.id = d.client_id
    JOIN comms.report_periods p ON p.id = d.period_id
    JOIN comms.reports r ON r.id = p.report_id";

/// The digest `reference` names: a digest id, or a period id (its latest revision). `None` when
/// neither matches.
pub async fn find(pool: &PgPool, reference: Uuid) -> Result<Option<DigestView>, sqlx::Error> {
    let digest: Option<Digest> = sqlx::query_as(&format!(
        "{DIGEST} WHERE d.id = $1 OR d.period_id = $1
         ORDER BY (d.id = $1) DESC, d.revision DESC LIMIT 1"
    ))
    .bind(reference)
    .fetch_optional(pool)
    .await?;
    let Some(digest) = digest else {
        return Ok(None);
    };
    let sends: Vec<Send> = sqlx::query_as(
        "SELECT s.contact_id, s.channel, s.idempotency_key, s.published_at, m.delivery_state
         FROM comms.digest_sends s
         LEFT JOIN comms.messages m ON m.idempotency_key = s.idempotency_key
         WHERE s.digest_id = $1 ORDER BY s.contact_id, s.channel",
    )
    .bind(digest.id)
    .fetch_all(pool)
    .await?;
    let views: Views = sqlx::query_as(
        "SELECT count(*) AS total, count(DISTINCT contact_id) AS contacts,
                min(viewed_at) AS first_at, max(viewed_at) AS last_at
         FROM comms.digest_views WHERE digest_id = $1",
    )
    .bind(digest.id)
    .fetch_one(pool)
    .await?;
    Ok(Some(DigestView {
        digest,
        sends,
        views,
    }))
}

/// A digest's states (`comms.digests.state`), for filters that must refuse any other word.
pub const STATES: &[&str] = &[
    "awaiting_approval",
    "approved",
    "published",
    "blocked",
    "superseded",
];

/// Every digest revision, newest build first; only those in `state` if given.
pub async fn list(pool: &PgPool, state: Option<&str>) -> Result<Vec<Digest>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{DIGEST} WHERE $1::text IS NULL OR d.state = $1 ORDER BY d.built_at DESC, d.revision DESC"
    ))
    .bind(state)
    .fetch_all(pool)
    .await
}
