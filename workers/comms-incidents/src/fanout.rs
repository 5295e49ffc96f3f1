//! The fan-out: from a queued notice to one send request per contact and channel on
//! `comms.send`, in chunks whose progress is committed in `comms.incident_notices`.
//!
//! A chunk is published (every publish broker-confirmed) before its progress is committed, so a
//! worker killed mid-chunk publishes that chunk again on restart: the sender records one message
//! per idempotency key (`incident:<id>:<sequence>:<contact>:<channel>`), so nobody gets a notice
//! twice. One process at a time fans a notice out (a session advisory lock, released by the
//! database when a killed worker's connection drops).
//!
//! A notice that needs its owner's approval first goes out as one proof: the portal update of the
//! first affected client, which the sender parks in the ordinary approval workflow. The owner's
//! decision on it decides the whole notice (docs/incidents.md).

use comms_domain::incidents::notice_key;
use comms_runtime::amqp::{Outgoing, PublishError, Publisher};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{ACTOR, metrics, store, targets};

#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("publishing a notice: {0}")]
    Publish(#[from] PublishError),
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Notice {
    id: Uuid,
    incident_id: Uuid,
    sequence: i64,
    purpose: String,
    template_base: String,
    template_version: Option<i32>,
    vars: serde_json::Value,
    pub(crate) proof_key: Option<String>,
    owner: String,
    cursor_client: Option<Uuid>,
    cursor_contact: Option<Uuid>,
}

const NOTICE_COLUMNS: &str = "n.id, n.incident_id, n.sequence, n.purpose, n.template_base,
    n.template_version, n.vars, n.proof_key, i.owner, n.cursor_client, n.cursor_contact";

impl Notice {
    /// The send request of this notice to `contact` on `channel` (contract v1).
    fn request(&self, contact: Uuid, channel: &str) -> (String, Vec<u8>) {
        let key = notice_key(self.incident_id, self.sequence, contact, channel);
        let mut template = serde_json::json!({
            "name": format!("{}.{channel}", self.template_base),
            "vars": self.vars,
        });
        if let Some(version) = self.template_version {
            template["version"] = version.into();
        }
        let request = serde_json::json!({
            "schema": comms_domain::contract::SEND_REQUEST_V1,
            "idempotency_key": key,
            "channel": channel,
            "kind": "incident_notice",
            "recipient": {"contact_id": contact},
            "template": template,
            "record": {"type": "incident", "id": self.incident_id},
            "owner": self.owner,
            "source": ACTOR,
            "trigger": format!("incident.{}:{}", self.purpose, self.sequence),
        });
        (key, serde_json::to_vec(&request).unwrap_or_default())
    }
}

/// Publishes every request of `batch`, side by side, each confirmed by the broker.
async fn publish_all(
    publisher: &Publisher,
    exchange: &str,
    batch: &[(String, &'static str, Vec<u8>)],
) -> Result<(), PublishError> {
    let publishes = batch.iter().map(|(key, channel, body)| {
        let routing_key = format!("send.{channel}");
        async move {
            publisher
                .publish(Outgoing {
                    exchange,
                    routing_key: &routing_key,
                    body,
                    message_id: Some(key.clone()),
                    content_type: Some(comms_domain::contract::CONTENT_TYPE),
                    ..Outgoing::default()
                })
                .await
        }
    });
    futures_util::future::try_join_all(publishes).await?;
    Ok(())
}

/// Notices whose proof waits for (or just got) the owner's decision, oldest first.
pub(crate) async fn awaiting_approval(pool: &PgPool) -> Result<Vec<Notice>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {NOTICE_COLUMNS} FROM comms.incident_notices n JOIN comms.incidents i ON i.id = n.incident_id
         WHERE n.state = 'awaiting_approval' ORDER BY n.created_at LIMIT 100"
    ))
    .fetch_all(pool)
    .await
}

/// Approved notices still to fan out (or to finish after a restart), oldest first.
pub(crate) async fn approved(pool: &PgPool) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM comms.incident_notices WHERE state = 'approved' ORDER BY created_at LIMIT 100",
    )
    .fetch_all(pool)
    .await
}

pub(crate) async fn load(pool: &PgPool, id: Uuid) -> Result<Notice, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {NOTICE_COLUMNS} FROM comms.incident_notices n JOIN comms.incidents i ON i.id = n.incident_id
         WHERE n.id = $1"
    ))
    .bind(id)
    .fetch_one(pool)
    .await
}

/// The first contact of the first affected client: who gets the proof.
pub(crate) async fn proof_contact(
    pool: &PgPool,
    incident: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.id FROM comms.incident_clients ic JOIN comms.contacts c ON c.client_id = ic.client_id
         WHERE ic.incident_id = $1 ORDER BY ic.client_id, c.id LIMIT 1",
    )
    .bind(incident)
    .fetch_optional(pool)
    .await
}

pub(crate) fn proof_request(notice: &Notice, contact: Uuid) -> (String, Vec<u8>) {
    notice.request(contact, "portal")
}

pub(crate) fn sequence(notice: &Notice) -> i64 {
    notice.sequence
}

pub(crate) fn notice_ids(notice: &Notice) -> (Uuid, Uuid, String) {
    (notice.id, notice.incident_id, notice.owner.clone())
}

/// Fans one approved notice out, chunk by chunk, from where it stopped.
pub(crate) async fn fan_out(
    pool: &PgPool,
    publisher: &Publisher,
    exchange: &str,
    id: Uuid,
    chunk: i64,
) -> Result<(), FanoutError> {
    let mut lock = pool.acquire().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1::text, 0))")
            .bind(id)
            .fetch_one(&mut *lock)
            .await?;
    if !locked {
        return Ok(());
    }
    let result = fan_out_locked(pool, publisher, exchange, id, chunk).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1::text, 0))")
        .bind(id)
        .execute(&mut *lock)
        .await;
    result
}

async fn fan_out_locked(
    pool: &PgPool,
    publisher: &Publisher,
    exchange: &str,
    id: Uuid,
    chunk: i64,
) -> Result<(), FanoutError> {
    // Read after taking the lock: another process may have finished it meanwhile.
    let state: String =
        sqlx::query_scalar("SELECT state FROM comms.incident_notices WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?;
    if state != "approved" {
        return Ok(());
    }
    let notice = load(pool, id).await?;
    let nil = Uuid::nil();
    let mut cursor = (
        notice.cursor_client.unwrap_or(nil),
        notice.cursor_contact.unwrap_or(nil),
    );
    let mut pages = targets::Pages::new(notice.incident_id, chunk);
    let mut page = pages.after(pool, cursor).await?;
    loop {
        let plan = targets::plan(&page);
        let batch: Vec<(String, &'static str, Vec<u8>)> = plan
            .sends
            .iter()
            .map(|(contact, channel)| {
                let (key, body) = notice.request(*contact, channel);
                (key, *channel, body)
            })
            .collect();
        let last = page.last().map(targets::Target::cursor);
        let finished = (page.len() as i64) < chunk;
        // The next page is read while this one is published; progress is committed only once
        // every request of this page is confirmed.
        let next_cursor = last.unwrap_or(cursor);
        let (published, next) = tokio::join!(publish_all(publisher, exchange, &batch), async {
            if finished {
                Ok(Vec::new())
            } else {
                pages.after(pool, next_cursor).await
            }
        });
        published?;
        commit_chunk(pool, &notice, last, &plan, finished).await?;
        if finished {
            return finish(pool, &notice).await.map_err(FanoutError::from);
        }
        cursor = next_cursor;
        page = next?;
    }
}

/// Commits one published chunk: skips, counts and the cursor, in one transaction.
async fn commit_chunk(
    pool: &PgPool,
    notice: &Notice,
    last: Option<(Uuid, Uuid)>,
    plan: &targets::Plan,
    finished: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !plan.skips.is_empty() {
        let (mut clients, mut contacts, mut channels, mut reasons) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (client, contact, channel, reason) in &plan.skips {
            clients.push(*client);
            contacts.push(*contact);
            channels.push(*channel);
            reasons.push(reason.as_str());
        }
        sqlx::query(
            "INSERT INTO comms.incident_skips (notice_id, client_id, contact_id, channel, reason)
             SELECT $1, * FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[])
             ON CONFLICT DO NOTHING",
        )
        .bind(notice.id)
        .bind(&clients)
        .bind(&contacts)
        .bind(&channels)
        .bind(&reasons)
        .execute(&mut *tx)
        .await?;
    }
    let count = |c: &str| plan.counts.get(c).copied().unwrap_or(0);
    sqlx::query(
        "UPDATE comms.incident_notices SET
             cursor_client = COALESCE($2, cursor_client), cursor_contact = COALESCE($3, cursor_contact),
             published_sms = published_sms + $4, published_email = published_email + $5,
             published_portal = published_portal + $6, skipped = skipped + $7,
             state = CASE WHEN $8 THEN 'done' ELSE state END,
             finished_at = CASE WHEN $8 THEN now() END
         WHERE id = $1",
    )
    .bind(notice.id)
    .bind(last.map(|l| l.0))
    .bind(last.map(|l| l.1))
    .bind(count("sms"))
    .bind(count("email"))
    .bind(count("portal"))
    .bind(i32::try_from(plan.skips.len()).unwrap_or(i32::MAX))
    .bind(finished)
    .execute(&mut *tx)
    .await?;
    if plan.counts.values().any(|n| *n > 0) {
        let first: Option<f64> = sqlx::query_scalar(
            "UPDATE comms.incidents SET first_notice_at = now()
             WHERE id = $1 AND first_notice_at IS NULL
             RETURNING extract(epoch FROM (now() - started_at))::float8",
        )
        .bind(notice.incident_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(seconds) = first {
            metrics::time_to_first_notice(seconds.max(0.0));
        }
    }
    tx.commit().await
}

/// The fan-out is done: the internal note of what went out, and the timeline entry.
async fn finish(pool: &PgPool, notice: &Notice) -> Result<(), sqlx::Error> {
    let (sms, email, portal, skipped): (i32, i32, i32, i32) = sqlx::query_as(
        "SELECT published_sms, published_email, published_portal, skipped
         FROM comms.incident_notices WHERE id = $1",
    )
    .bind(notice.id)
    .fetch_one(pool)
    .await?;
    let reasons: Vec<(String, i64)> = sqlx::query_as(
        "SELECT reason, count(*) FROM comms.incident_skips WHERE notice_id = $1 GROUP BY reason ORDER BY reason",
    )
    .bind(notice.id)
    .fetch_all(pool)
    .await?;
    let reasons: serde_json::Map<String, serde_json::Value> =
        reasons.into_iter().map(|(r, n)| (r, n.into())).collect();
    let detail = serde_json::json!({
        "sequence": notice.sequence, "purpose": notice.purpose,
        "template": notice.template_base,
        "published": {"sms": sms, "email": email, "portal": portal},
        "skipped": skipped, "skipped_by_reason": reasons,
    });
    let body = format!(
        "{} notice (sequence {}, template {}): {sms} SMS, {email} email, {portal} portal send requests; {skipped} skipped",
        notice.purpose, notice.sequence, notice.template_base
    );
    sqlx::query(
        "INSERT INTO internal.incident_notes (incident_id, sequence, kind, body, detail)
         VALUES ($1, $2, 'notice', $3, $4)",
    )
    .bind(notice.incident_id)
    .bind(notice.sequence)
    .bind(&body)
    .bind(&detail)
    .execute(pool)
    .await?;
    metrics::notices(&notice.purpose);
    store::log(pool, notice.incident_id, "notice_fanned_out", ACTOR, detail).await
}
