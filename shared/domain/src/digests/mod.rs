//! What the sender needs to know about report digests, kept here so the sender does not depend on
//! the digest worker: the idempotency key every digest send carries, and whether the content of a
//! send is exactly what the owner approved for its digest.
//!
//! The owner approves a digest once (`comms-digest`, docs/digests.md); the digest worker then
//! publishes one send request per contact and channel. Without this, the sender would hold each
//! of those messages for an approval of its own, and nothing would go out.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use comms_runtime::amqp::{Outgoing, PublishError, Publisher};
use comms_runtime::topology::Topology;

pub mod decide;
pub mod link;
pub mod view;

/// Routing key of a report-digest job on the `comms.digest` exchange.
pub const REPORT_JOB: &str = "digest.report";

/// The idempotency key of one digest send: `digest:<period>:<contact>:<channel>`.
pub fn send_key(period: Uuid, contact: Uuid, channel: &str) -> String {
    format!("digest:{period}:{contact}:{channel}")
}

/// Publishes a `digest.report` job for `period` (confirmed), as an upstream app would: the digest
/// worker builds the digest, or publishes it once approved.
pub async fn enqueue_build(
    publisher: &Publisher,
    topology: &Topology,
    period: Uuid,
    owner: &str,
    source: &str,
    requested_at: DateTime<Utc>,
) -> Result<(), PublishError> {
    let body = report_job(period, owner, source, requested_at);
    publisher
        .publish(Outgoing {
            exchange: &topology.digest_exchange(),
            routing_key: REPORT_JOB,
            body: &body,
            ..Outgoing::default()
        })
        .await
}

/// The body of a `digest.report` job for `period` (for publishers other than [`enqueue_build`]'s,
/// such as the gateway's broker link).
pub fn report_job(period: Uuid, owner: &str, source: &str, requested_at: DateTime<Utc>) -> Vec<u8> {
    serde_json::json!({
        "report_period_id": period,
        "owner": owner,
        "source": source,
        "requested_at": requested_at,
    })
    .to_string()
    .into_bytes()
}

/// Whether `key` has the shape of a digest send key (cheap, no database).
pub fn is_send_key(key: &str) -> bool {
    key.starts_with("digest:")
}

/// The decision on a digest send: `approved` when the request with `key` was handed over by a
/// digest the owner approved (`approved` or `published`) and what the sender rendered (`subject`,
/// `body`), with the send's own view link put back to [`link::PLACEHOLDER`], is exactly that
/// digest's wording for the send's channel (compared by
/// [`approval_hash`](crate::approvals::approval_hash)). `None` otherwise (not a digest send, a
/// superseded digest, or other content): the sender then waits for an approval of the message
/// itself.
pub async fn send_clearance(
    pool: &PgPool,
    key: &str,
    subject: Option<&str>,
    body: &str,
) -> Result<Option<String>, sqlx::Error> {
    if !is_send_key(key) {
        return Ok(None);
    }
    let cleared: Option<bool> = sqlx::query_scalar(
        "SELECT d.state IN ('approved', 'published')
                AND CASE s.channel
                        WHEN 'email' THEN comms.approval_hash(d.email_subject, d.email_body)
                        ELSE comms.approval_hash(d.portal_subject, d.portal_body)
                    END = comms.approval_hash(comms.digest_wording($2, s.view_url),
                                              comms.digest_wording($3, s.view_url))
         FROM comms.digest_sends s JOIN comms.digests d ON d.id = s.digest_id
         WHERE s.idempotency_key = $1",
    )
    .bind(key)
    .bind(subject)
    .bind(body)
    .fetch_optional(pool)
    .await?;
    Ok(cleared.unwrap_or(false).then(|| "approved".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_key_names_period_contact_and_channel() {
        let (period, contact) = (Uuid::new_v4(), Uuid::new_v4());
        let key = send_key(period, contact, "portal");
        assert_eq!(key, format!("digest:{period}:{contact}:portal"));
        assert!(is_send_key(&key));
        assert!(!is_send_key("welcome-0001"));
    }
}
