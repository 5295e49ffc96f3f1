//! `GET /v1/messages/{id or idempotency_key}` and `GET /v1/messages`: what became of an app's
//! messages, without database access.
//!
//! A key of role `enqueue` reads only its own app's messages: those it enqueued over HTTP (the
//! gateway records the key's name per idempotency key before it publishes) and those published
//! over AMQP whose `source` is the key's name. Another app's message answers 404, exactly like a
//! message that does not exist, so nothing leaks. The rendered body is never returned and the
//! recipient's address is masked.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{Authorized, Enqueue};
use crate::reply;
use crate::state::GatewayState;
use crate::write_batch::{WriteBatch, by_ordinal};

/// Largest page `GET /v1/messages` returns (`limit` is capped to it).
pub const MAX_PAGE: i64 = 200;
const DEFAULT_PAGE: i64 = 50;

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    idempotency_key: String,
    channel: String,
    kind: String,
    record_type: String,
    record_id: Uuid,
    recipient_address: String,
    owner: String,
    source: String,
    delivery_state: String,
    reply_state: String,
    opt_out_state: String,
    failure_reason: Option<String>,
    next_action: Option<String>,
    attempt_count: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    dispatched_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    recovery_rule: Option<String>,
    state_times: Value,
}

const COLUMNS: &str = "m.id, m.idempotency_key, m.channel, m.kind, m.record_type, m.record_id,
    m.recipient_address, m.owner, m.source, m.delivery_state, m.reply_state, m.opt_out_state,
    m.failure_reason, m.next_action, m.attempt_count, m.created_at, m.updated_at, m.dispatched_at,
    m.delivered_at,
    (SELECT e.recovery_rule FROM comms.message_events e
      WHERE e.message_id = m.id AND e.recovery_rule IS NOT NULL ORDER BY e.id DESC LIMIT 1)
      AS recovery_rule,
    COALESCE((SELECT jsonb_object_agg(t.event_type, t.at) FROM
      (SELECT event_type, min(occurred_at) AS at FROM comms.message_events
        WHERE message_id = m.id GROUP BY event_type) t), '{}'::jsonb) AS state_times";

/// Addresses are masked here as in every listing (docs/privacy.md).
pub use comms_domain::privacy::mask_address;

fn view(row: Row) -> Value {
    let times: BTreeMap<String, Value> =
        serde_json::from_value(row.state_times).unwrap_or_default();
    json!({
        "id": row.id,
        "idempotency_key": row.idempotency_key,
        "channel": row.channel,
        "kind": row.kind,
        "record": { "type": row.record_type, "id": row.record_id },
        "recipient": mask_address(&row.recipient_address),
        "owner": row.owner,
        "source": row.source,
        "delivery_state": row.delivery_state,
        "reply_state": row.reply_state,
        "opt_out_state": row.opt_out_state,
        "failure_reason": row.failure_reason,
        "recovery_rule": row.recovery_rule,
        "next_action": row.next_action,
        "attempts": row.attempt_count,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "dispatched_at": row.dispatched_at,
        "delivered_at": row.delivered_at,
        "timestamps": times,
    })
}

fn not_found() -> Response {
    reply::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no message with this id or idempotency key was enqueued by this app",
    )
}

fn unavailable() -> Response {
    reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "message status cannot be read right now; try again",
    )
}

/// `GET /v1/messages/{id or idempotency_key}`
pub async fn one(
    State(state): State<GatewayState>,
    auth: Authorized<Enqueue>,
    Path(reference): Path<String>,
) -> Response {
    let by_id = reference.parse::<Uuid>().ok();
    let found: Result<Option<Row>, sqlx::Error> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM comms.messages m
         WHERE (m.idempotency_key = $1 OR m.id = $2)
           AND comms.message_app(m.idempotency_key, m.source) = $3
         ORDER BY (m.idempotency_key = $1) DESC LIMIT 1"
    ))
    .bind(&reference)
    .bind(by_id)
    .bind(&auth.caller.name)
    .fetch_optional(&state.inner().pool)
    .await;
    match found {
        Ok(Some(row)) => (StatusCode::OK, Json(view(row))).into_response(),
        Ok(None) => not_found(),
        Err(error) => {
            tracing::warn!(%error, "message status read failed");
            unavailable()
        }
    }
}

/// Filters and paging of `GET /v1/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub state: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub record_type: Option<String>,
    pub record_id: Option<Uuid>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn encode_cursor(created_at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", created_at.to_rfc3339()))
}

fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (at, id) = text.split_once('|')?;
    Some((
        DateTime::parse_from_rfc3339(at).ok()?.to_utc(),
        id.parse().ok()?,
    ))
}

/// `GET /v1/messages?state=&since=&record_type=&record_id=&limit=&cursor=`: oldest first, so a
/// cursor stays valid while new messages arrive (they land after it).
pub async fn list(
    State(state): State<GatewayState>,
    auth: Authorized<Enqueue>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "allowed parameters: state, since (RFC 3339), record_type, record_id (UUID), limit, cursor",
        );
    };
    // A larger page than the API gives is capped (apps may ask for "all"); one below 1 is a
    // mistake.
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit < 1 {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            &format!("limit: expected 1–{MAX_PAGE} (larger is capped); found {limit}"),
        );
    }
    let limit = limit.min(MAX_PAGE);
    if let Some(unknown) = query.state.as_deref().filter(|state| {
        !comms_domain::messages::DeliveryState::ALL
            .iter()
            .any(|known| known.as_str() == *state)
    }) {
        let known: Vec<&str> = comms_domain::messages::DeliveryState::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        return reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            &format!(
                "state: `{unknown}` is not a delivery state ({})",
                known.join(", ")
            ),
        );
    }
    let after = match query.cursor.as_deref().map(decode_cursor) {
        None => None,
        Some(Some(after)) => Some(after),
        Some(None) => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "the cursor is not one this API returned",
            );
        }
    };
    let rows: Result<Vec<Row>, sqlx::Error> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM comms.messages m
         WHERE comms.message_app(m.idempotency_key, m.source) = $1
           AND ($2::text IS NULL OR m.delivery_state = $2)
           AND ($3::timestamptz IS NULL OR m.created_at >= $3)
           AND ($4::text IS NULL OR m.record_type = $4)
           AND ($5::uuid IS NULL OR m.record_id = $5)
           AND ($6::timestamptz IS NULL OR (m.created_at, m.id) > ($6, $7))
         ORDER BY m.created_at, m.id LIMIT $8"
    ))
    .bind(&auth.caller.name)
    .bind(&query.state)
    .bind(query.since)
    .bind(&query.record_type)
    .bind(query.record_id)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(limit + 1)
    .fetch_all(&state.inner().pool)
    .await;
    let mut rows = match rows {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "message list read failed");
            return unavailable();
        }
    };
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|r| encode_cursor(r.created_at, r.id)))
        .flatten();
    let messages: Vec<Value> = rows.into_iter().map(view).collect();
    (
        StatusCode::OK,
        Json(json!({ "messages": messages, "next_cursor": next })),
    )
        .into_response()
}

/// A send request's key and the app that submitted it, on its way to [`record_submissions`].
pub struct Submission {
    pub key: String,
    pub app: String,
}

/// Submissions recorded together at most (one statement).
const SUBMISSION_BATCH_MAX: usize = 128;
/// Submission statements running at once (each on its own pool connection).
const SUBMISSIONS_IN_FLIGHT: usize = 3;

/// What an idempotency key already had when an app submitted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// Nothing of this app's yet (a new key, or this app's key whose message is not recorded
    /// yet): publish; the sender dedupes.
    New,
    /// This app's message, already recorded under the key: not published again.
    Recorded(Uuid),
    /// Another app's key (it submitted it first, over HTTP, or its message carries the key):
    /// refused, since this request could never be sent.
    Taken,
}

/// The batch task that records submissions for `POST /v1/messages` (inside the Tokio runtime).
pub fn submission_batch(pool: PgPool) -> WriteBatch<Submission, Prior> {
    WriteBatch::spawn(SUBMISSION_BATCH_MAX, SUBMISSIONS_IN_FLIGHT, move |items| {
        record_submissions(pool.clone(), items)
    })
}

/// For each submission, what its key already had ([`Prior`]); a key nobody had is recorded as
/// this app's (the first app to submit a key keeps it; within one statement, the first in
/// arrival order, and a later submission of the same key by another app in that statement is
/// [`Prior::Taken`]). One statement for all of them; keys are inserted in key order, so two
/// statements with overlapping keys never wait on each other in a circle.
pub async fn record_submissions(
    pool: PgPool,
    submissions: Vec<Submission>,
) -> Result<Vec<Prior>, sqlx::Error> {
    let keys: Vec<&str> = submissions.iter().map(|s| s.key.as_str()).collect();
    let apps: Vec<&str> = submissions.iter().map(|s| s.app.as_str()).collect();
    let rows: Vec<(i64, (Option<Uuid>, String))> =
        sqlx::query_as::<_, (i64, Option<Uuid>, String)>(
            "WITH submission AS (
             SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS s(key, app, n)),
         known AS (
             SELECT s.n, m.id, COALESCE(a.app, m.source) AS app FROM submission s
             LEFT JOIN comms.api_submissions a ON a.idempotency_key = s.key
             LEFT JOIN comms.messages m ON m.idempotency_key = s.key
             WHERE a.idempotency_key IS NOT NULL OR m.id IS NOT NULL),
         first AS (
             SELECT DISTINCT ON (key) key, app FROM submission
             WHERE NOT EXISTS (SELECT 1 FROM known WHERE known.n = submission.n)
             ORDER BY key, n),
         -- On a conflict (another statement recorded the key meanwhile) the row is kept as it
         -- is and returned, so its owner is known here too.
         submitted AS (
             INSERT INTO comms.api_submissions (idempotency_key, app)
             SELECT key, app FROM first ORDER BY key
             ON CONFLICT (idempotency_key) DO UPDATE SET app = comms.api_submissions.app
             RETURNING idempotency_key, app)
         SELECT n, id, app FROM known
         UNION ALL
         SELECT s.n, NULL::uuid, r.app FROM submission s
         JOIN submitted r ON r.idempotency_key = s.key
         WHERE s.app <> r.app",
        )
        .bind(&keys)
        .bind(&apps)
        .fetch_all(&pool)
        .await?
        .into_iter()
        .map(|(n, id, app)| (n, (id, app)))
        .collect();
    let found = by_ordinal(submissions.len(), rows);
    Ok(submissions
        .iter()
        .zip(found)
        .map(|(submission, found)| match found {
            None => Prior::New,
            Some((_, owner)) if owner != submission.app => Prior::Taken,
            Some((id, _)) => id.map_or(Prior::New, Prior::Recorded),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let at = Utc::now();
        let id = Uuid::new_v4();
        let (back_at, back_id) = decode_cursor(&encode_cursor(at, id)).expect("decodes");
        assert_eq!(
            (back_at.timestamp_micros(), back_id),
            (at.timestamp_micros(), id)
        );
        assert!(decode_cursor("not-a-cursor").is_none());
    }
}
