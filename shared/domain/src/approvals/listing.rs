//! What waits for a decision, and what was decided: the owner's queue and the record of how long
//! approvals took.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::Gate;

/// Characters of a body shown in a listing.
const PREVIEW_CHARS: usize = 80;

/// One message waiting for a decision.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub id: Uuid,
    pub idempotency_key: String,
    pub owner: String,
    pub kind: String,
    pub channel: String,
    pub waits_for: Gate,
    pub subject: Option<String>,
    /// The start of the body on one line.
    pub preview: String,
    pub contains_roi: bool,
    pub ai_draft: bool,
    pub requested_at: DateTime<Utc>,
    pub age_seconds: f64,
}

#[derive(sqlx::FromRow)]
struct WaitingRow {
    id: Uuid,
    idempotency_key: String,
    owner: String,
    kind: String,
    channel: String,
    request_reason: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    contains_roi: bool,
    ai_draft: bool,
    requested_at: DateTime<Utc>,
    age_seconds: f64,
}

/// The start of `body` on one line, at most [`PREVIEW_CHARS`] characters.
pub fn preview(body: &str) -> String {
    let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= PREVIEW_CHARS {
        return line;
    }
    let cut: String = line.chars().take(PREVIEW_CHARS - 1).collect();
    format!("{cut}…")
}

/// Messages waiting for a decision, oldest request first; only `owner`'s when given (and those of
/// owners who named `owner` a delegate).
pub async fn waiting(pool: &PgPool, owner: Option<&str>) -> Result<Vec<Waiting>, sqlx::Error> {
    let rows: Vec<WaitingRow> = sqlx::query_as(
        "SELECT m.id, m.idempotency_key, m.owner, m.kind, m.channel, r.reason AS request_reason,
                m.subject, m.body, m.contains_roi, m.ai_draft,
                COALESCE(r.occurred_at, m.updated_at) AS requested_at,
                extract(epoch FROM now() - COALESCE(r.occurred_at, m.updated_at))::double precision
                    AS age_seconds
         FROM comms.messages m
         LEFT JOIN LATERAL (
             SELECT e.reason, e.occurred_at FROM comms.message_events e
             WHERE e.message_id = m.id AND e.event_type = 'approval_requested'
             ORDER BY e.id DESC LIMIT 1) r ON true
         WHERE m.delivery_state = 'awaiting_approval'
           AND ($1::text IS NULL OR m.owner = $1 OR EXISTS (
                SELECT 1 FROM comms.approval_delegates d WHERE d.owner = m.owner AND d.delegate = $1))
         ORDER BY requested_at, m.id",
    )
    .bind(owner)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Waiting {
            id: r.id,
            idempotency_key: r.idempotency_key,
            owner: r.owner,
            kind: r.kind,
            channel: r.channel,
            waits_for: Gate::from_reason(r.request_reason.as_deref()),
            subject: r.subject,
            preview: preview(r.body.as_deref().unwrap_or("")),
            contains_roi: r.contains_roi,
            ai_draft: r.ai_draft,
            requested_at: r.requested_at,
            age_seconds: r.age_seconds,
        })
        .collect())
}

/// One recorded decision, with its approval time.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DecisionRecord {
    pub message_id: Uuid,
    pub idempotency_key: String,
    pub owner: String,
    pub kind: String,
    pub decision: String,
    pub decided_by: String,
    pub on_behalf_of: Option<String>,
    pub reason: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub decided_at: DateTime<Utc>,
    pub approval_seconds: Option<f64>,
}

/// The latest `limit` decisions, newest first.
pub async fn decided(pool: &PgPool, limit: i64) -> Result<Vec<DecisionRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.message_id, m.idempotency_key, m.owner, m.kind, a.decision, a.decided_by,
                a.on_behalf_of, a.reason, a.requested_at, a.decided_at, a.approval_seconds
         FROM comms.message_approvals a JOIN comms.messages m ON m.id = a.message_id
         ORDER BY a.decided_at DESC, a.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::preview;

    #[test]
    fn a_preview_is_one_short_line() {
        assert_eq!(
            preview("Hi  Dana,\n\nyour report\tis ready"),
            "Hi Dana, your report is ready"
        );
        let long = "word ".repeat(40);
        let shown = preview(&long);
        assert_eq!(shown.chars().count(), 80);
        assert!(shown.ends_with('…'));
    }
}
