//! Handing an approved digest to the sender: one send request per recipient contact and channel
//! (email, portal), idempotency key `digest:<period>:<contact>:<channel>`.
//!
//! Each send carries the recipient's own signed report-view link (template variable `view_url`,
//! `comms_domain::digests::link`), valid for `digest.view_ttl` from the first publish and stored
//! with the send, so a replay hands over the same link and the sender can put it back to the
//! placeholder the approved wording carries.
//!
//! The sends are recorded first (so the sender can find the digest's approval for each key),
//! then published with confirms, then the digest and its period are marked `published`. A crash
//! anywhere in between publishes again with the same keys: the sender records one message per
//! key, so a replay, a rebuild or a restart never sends twice.

use chrono::{DateTime, Utc};
use comms_domain::digests::link::{self, ViewLink};
use comms_domain::digests::send_key;
use comms_runtime::amqp::{Outgoing, PublishError, Publisher};
use comms_runtime::runtime::Runtime;
use secrecy::ExposeSecret;
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] PublishError),
}

#[derive(sqlx::FromRow)]
struct Approved {
    period_id: Uuid,
    report_id: Uuid,
    client_id: Uuid,
    owner: String,
    source: String,
    facts: serde_json::Value,
    email_template: Option<i32>,
    portal_template: Option<i32>,
}

/// Publishes the approved digest `digest_id` at `now`; returns how many sends were handed over.
pub async fn publish(
    runtime: &Runtime,
    publisher: &Publisher,
    digest_id: Uuid,
    now: DateTime<Utc>,
) -> Result<usize, PublishFailure> {
    let pool = &runtime.pool;
    let digest: Approved = sqlx::query_as(
        "SELECT d.period_id, p.report_id, d.client_id, d.owner, d.source, d.facts,
                d.email_template, d.portal_template
         FROM comms.digests d JOIN comms.report_periods p ON p.id = d.period_id
         WHERE d.id = $1 AND d.state IN ('approved', 'published')",
    )
    .bind(digest_id)
    .fetch_one(pool)
    .await?;
    let recipients: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT cc.contact_id, cc.channel FROM comms.contact_channels cc
         JOIN comms.contacts c ON c.id = cc.contact_id
         WHERE c.client_id = $1 AND cc.channel IN ('email', 'portal')
         ORDER BY cc.contact_id, cc.channel",
    )
    .bind(digest.client_id)
    .fetch_all(pool)
    .await?;
    let settings = &runtime.settings.digest;
    let expires_at =
        now + chrono::Duration::from_std(settings.view_ttl).unwrap_or(chrono::Duration::MAX);
    let secret = settings.view_secret.expose_secret().as_bytes();
    let base = &runtime.settings.gateway.public_url;
    let mut links = Vec::with_capacity(recipients.len());
    let mut tx = pool.begin().await?;
    for (contact, channel) in &recipients {
        let fresh = link::url(
            base,
            secret,
            &ViewLink {
                digest_id,
                contact_id: *contact,
                expires_at,
            },
        );
        sqlx::query(
            "INSERT INTO comms.digest_sends (digest_id, contact_id, channel, idempotency_key, view_url)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(digest_id)
        .bind(contact)
        .bind(channel)
        .bind(send_key(digest.period_id, *contact, channel))
        .bind(&fresh)
        .execute(&mut *tx)
        .await?;
        // A replay keeps the link recorded first (the one the sender may already have used).
        let kept: Option<Option<String>> = sqlx::query_scalar(
            "SELECT view_url FROM comms.digest_sends
             WHERE digest_id = $1 AND contact_id = $2 AND channel = $3",
        )
        .bind(digest_id)
        .bind(contact)
        .bind(channel)
        .fetch_optional(&mut *tx)
        .await?;
        links.push(kept.flatten().unwrap_or(fresh));
    }
    tx.commit().await?;
    let exchange = runtime.topology.send_exchange();
    for ((contact, channel), view_url) in recipients.iter().zip(&links) {
        let (name, version) = match channel.as_str() {
            "email" => (&settings.email_template, digest.email_template),
            _ => (&settings.portal_template, digest.portal_template),
        };
        let key = send_key(digest.period_id, *contact, channel);
        let mut vars = digest.facts.clone();
        if let Some(vars) = vars.as_object_mut() {
            vars.insert("view_url".into(), json!(view_url));
        }
        let request = json!({
            "schema": "comms.send_request.v1",
            "idempotency_key": key,
            "channel": channel,
            "kind": "report_digest",
            "recipient": { "contact_id": contact },
            "template": { "name": name, "version": version, "vars": vars },
            "record": { "type": "report", "id": digest.report_id },
            "owner": digest.owner,
            "source": digest.source,
            "trigger": "digest.report",
        });
        let body = serde_json::to_vec(&request).unwrap_or_default();
        publisher
            .publish(Outgoing {
                exchange: &exchange,
                routing_key: &format!("send.{channel}"),
                body: &body,
                message_id: Some(key.clone()),
                ..Outgoing::default()
            })
            .await?;
    }
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE comms.digests SET state = 'published', published_at = coalesce(published_at, now())
         WHERE id = $1",
    )
    .bind(digest_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE comms.report_periods SET state = 'published' WHERE id = $1")
        .bind(digest.period_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(recipients.len())
}
