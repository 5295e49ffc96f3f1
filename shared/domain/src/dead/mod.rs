//! Dead letters an operator can act on: list, show, replay and purge what the fleet refused,
//! shared by `commsctl dead` and the gateway's admin API so both apply the same rules
//! (docs/operations.md#dead-letters).
//!
//! `internal.rejected_input` is the one place dead letters are listed from. The consumer runtime
//! writes a row for every message it dead-letters, byte for byte, before it publishes the copy to
//! `comms.dead`; the broker's own dead letters (a message that reached its queue's delivery
//! limit) are only in `comms.dead`, so every command first [`collect`]s the queue into the table:
//! the runtime's copies are acked (their row exists), the broker's are recorded, then acked.
//!
//! A listing never shows a full payload: the first bytes, with phone numbers, email addresses and
//! secret-looking values masked ([`mask`]). Replay and purge are audited in
//! `internal.dead_letter_actions` (who, when, how many, why), and each row they touched names its
//! action.

mod act;
mod collect;
pub mod mask;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

pub use act::{Action, ActionReport, ActionRequest, DeadError, purge, replay};
pub use collect::{COLLECT_MAX, Collected, collect};

/// Which dead letters a command means. Every field narrows; none means all.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Filter {
    /// The origin queue, as named in the topology (`comms.send.sms`; the namespace is added).
    pub queue: Option<String>,
    /// Part of the reason (case-insensitive).
    pub reason: Option<String>,
    /// Received at or after.
    pub since: Option<DateTime<Utc>>,
    /// One dead letter.
    pub id: Option<i64>,
    /// Also those already replayed or purged (listing only; replay and purge take only `dead`).
    pub all_states: bool,
}

/// One dead letter as a listing shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: i64,
    /// The queue it was refused on.
    pub queue: String,
    pub routing_key: String,
    /// Why, masked like the payload (a reason can quote a field).
    pub reason: String,
    pub received_at: DateTime<Utc>,
    /// `dead`, `replayed` or `purged`.
    pub state: String,
    /// `runtime` (a worker refused it) or `broker` (the queue's delivery limit).
    pub origin: String,
    /// Payload size in bytes (0 once purged).
    pub size: i32,
    /// The first bytes of the payload, masked.
    #[sqlx(skip)]
    pub preview: String,
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// The headers it carried, as stored (what a replay gives back to the worker).
    #[serde(skip)]
    pub headers: serde_json::Value,
}

/// One dead letter as `dead show` shows it: a longer preview, its headers and what was done.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    #[serde(flatten)]
    pub letter: DeadLetter,
    /// Headers, every string value masked.
    pub headers: serde_json::Value,
    /// The replay or purge that touched it.
    pub action: Option<Action>,
}

/// A `since` filter: an RFC 3339 time, or a duration back from now (`2h`, `30m`).
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|back| chrono::Duration::from_std(back).ok())
        .map(|back| Utc::now() - back)
        .ok_or_else(|| {
            format!("since: `{text}` is neither an RFC 3339 time nor a duration like 2h")
        })
}

/// A replay rate: `N/s` or `N`, messages per second, positive.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    text.trim()
        .trim_end_matches("/s")
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("rate: `{text}` is not a positive rate like 50/s"))
}

/// `queue` as stored: the topology's name of it, under `namespace` (unless already under it).
fn queue_name(namespace: &str, queue: &str) -> String {
    let topology = comms_runtime::topology::Topology::new(namespace);
    if topology.namespace().is_empty() || queue.starts_with(topology.namespace()) {
        return queue.to_string();
    }
    topology.name(queue)
}

/// The `WHERE` clause of `filter` over `internal.rejected_input r`, with its parameters $1..$5.
const MATCHES: &str = "($1::text IS NULL OR r.queue = $1)
    AND ($2::text IS NULL OR r.reason ILIKE '%' || replace(replace(replace($2, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%')
    AND ($3::timestamptz IS NULL OR r.received_at >= $3)
    AND ($4::int8 IS NULL OR r.id = $4)
    AND ($5 OR r.state = 'dead')";

const COLUMNS: &str = "r.id, r.queue, r.routing_key, r.reason, r.received_at, r.state, r.origin,
    octet_length(r.payload) AS size, r.payload, r.headers";

/// Dead letters matching `filter`, oldest first (what replay and purge work through).
pub(crate) async fn matching(
    pool: &PgPool,
    namespace: &str,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    select(pool, namespace, filter, limit, "ASC").await
}

/// The newest `limit` dead letters matching `filter`, newest first.
pub async fn list(
    pool: &PgPool,
    namespace: &str,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    select(pool, namespace, filter, limit, "DESC").await
}

async fn select(
    pool: &PgPool,
    namespace: &str,
    filter: &Filter,
    limit: i64,
    order: &str,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let mut letters: Vec<DeadLetter> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM internal.rejected_input r WHERE {MATCHES} ORDER BY r.id {order} LIMIT $6"
    ))
    .bind(filter.queue.as_deref().map(|q| queue_name(namespace, q)))
    .bind(filter.reason.as_deref())
    .bind(filter.since)
    .bind(filter.id)
    .bind(filter.all_states)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    for letter in &mut letters {
        letter.reason = mask::mask(&letter.reason);
        letter.preview = mask::preview(&letter.payload, mask::PREVIEW_CHARS);
    }
    Ok(letters)
}

/// One dead letter, whatever its state.
pub async fn show(pool: &PgPool, id: i64) -> Result<Option<Detail>, sqlx::Error> {
    let found: Option<DeadLetter> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM internal.rejected_input r WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(mut letter) = found else {
        return Ok(None);
    };
    letter.reason = mask::mask(&letter.reason);
    letter.preview = mask::preview(&letter.payload, mask::DETAIL_CHARS);
    let (headers, action_id): (serde_json::Value, Option<i64>) =
        sqlx::query_as("SELECT headers, action_id FROM internal.rejected_input WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?;
    let action = match action_id {
        Some(action) => act::action(pool, action).await?,
        None => None,
    };
    Ok(Some(Detail {
        letter,
        headers: mask_json(headers),
        action,
    }))
}

/// Every string in `value` masked.
fn mask_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(mask::mask(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(mask_json).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, mask_json(v))).collect())
        }
        other => other,
    }
}
