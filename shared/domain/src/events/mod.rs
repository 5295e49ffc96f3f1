//! Lifecycle events for upstream apps (`comms.events`), and the signature of webhooks out.
//!
//! The events themselves are written by the database (the outbox triggers of migration
//! `0008_events_outbox.sql`), in the same transaction as the change they describe; this module is
//! their typed reading, kept in agreement with `docs/event.schema.json` and docs/upstream.md by
//! the tests in `events/schema_agreement.rs`, so an app generating a client from the schema reads
//! exactly what the fleet sends.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

#[cfg(test)]
mod schema_agreement;

/// The `schema` of every event of this version.
pub const EVENT_V1: &str = "comms.event.v1";

/// Header carrying the Unix time (seconds) a webhook delivery was signed at.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "X-Comms-Timestamp";
/// Header carrying `v1=<hex HMAC-SHA256>` of a webhook delivery.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "X-Comms-Signature";
/// AMQP header of a replayed event on `comms.webhooks`: the one webhook to deliver it to again.
pub const WEBHOOK_REPLAY_HEADER: &str = "x-comms-webhook-replay";
/// Header carrying the event id, for de-duplication without parsing the body.
pub const WEBHOOK_EVENT_ID_HEADER: &str = "X-Comms-Event-Id";

// Every key is required, `null` included (`deserialize_with` turns off serde's default of reading
// a missing `Option` as `None`), as docs/event.schema.json says.

/// One lifecycle event (`comms.event.v1`), as published on `comms.events` and POSTed to webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleEvent {
    pub schema: String,
    /// Unique per event; a consumer that sees an id twice drops the second copy.
    pub event_id: Uuid,
    /// `message.<event>` (e.g. `message.delivered`), `task.opened|overdue|closed` or
    /// `incident.declared|updated|facts_verified|resolved` or
    /// `digest.built|blocked|approved|published|superseded|viewed`;
    /// also the routing key on `comms.events`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    /// The app the message belongs to: the API key that enqueued it over HTTP, else its `source`.
    #[serde(deserialize_with = "Option::deserialize")]
    pub app: Option<String>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub message: Option<MessageSnapshot>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub task: Option<TaskSnapshot>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub incident: Option<IncidentSnapshot>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub digest: Option<DigestSnapshot>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub reason: Option<String>,
}

/// What an event says about its message: ids, states and reasons, never personal content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageSnapshot {
    pub id: Uuid,
    pub idempotency_key: String,
    pub channel: String,
    pub kind: String,
    pub record: RecordRef,
    pub owner: String,
    pub source: String,
    pub delivery_state: String,
    pub reply_state: String,
    pub opt_out_state: String,
    #[serde(deserialize_with = "Option::deserialize")]
    pub failure_reason: Option<String>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub next_action: Option<String>,
    pub attempts: i32,
}

/// An owner task, for `task.*` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSnapshot {
    pub id: Uuid,
    pub owner: String,
    pub title: String,
    pub next_action: String,
    pub state: String,
    #[serde(deserialize_with = "Option::deserialize")]
    pub due_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub record: Option<RecordRef>,
}

/// A report digest, for `digest.*` events: never its content or figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSnapshot {
    pub id: Uuid,
    pub period_id: Uuid,
    pub revision: i32,
    pub client_id: Uuid,
    pub state: String,
    pub owner: String,
    pub source: String,
}

/// An incident, for `incident.*` events: never its title or internal summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentSnapshot {
    pub id: Uuid,
    pub sequence: i64,
    pub severity: String,
    pub facts_verified: bool,
    pub owner: String,
    pub source: String,
    /// The affected clients' ids.
    pub clients: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordRef {
    #[serde(rename = "type")]
    pub record_type: String,
    pub id: Uuid,
}

/// The webhook signature: `v1=` + hex(HMAC-SHA256(secret, `<timestamp>.<body>`)).
pub fn sign_webhook(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let hex: String = webhook_mac(secret, timestamp, body)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v1={hex}")
}

/// Checks a webhook signature in constant time, as a receiving app should (see docs/upstream.md
/// for the recipe in other languages).
pub fn verify_webhook(secret: &[u8], timestamp: i64, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.trim().strip_prefix("v1=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    webhook_mac(secret, timestamp, body)
        .verify_slice(&expected)
        .is_ok()
}

fn webhook_mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (longer ones are hashed), so this is infallible.
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published in docs/upstream.md.
    #[test]
    fn the_documented_test_vector_signs_and_verifies() {
        let secret = b"whsec_0123456789abcdef0123456789abcdef";
        let body =
            br#"{"event_id":"00000000-0000-4000-8000-000000000000","type":"message.delivered"}"#;
        let signature = sign_webhook(secret, 1_767_225_600, body);
        assert_eq!(
            signature,
            "v1=7f205565110a04924f47af4a329715496f0436ffd702e64259adb0e8097761ec"
        );
        assert!(verify_webhook(secret, 1_767_225_600, body, &signature));
        assert!(!verify_webhook(secret, 1_767_225_601, body, &signature));
        assert!(!verify_webhook(
            b"another secret",
            1_767_225_600,
            body,
            &signature
        ));
        assert!(!verify_webhook(secret, 1_767_225_600, b"{}", &signature));
        assert!(!verify_webhook(secret, 1_767_225_600, body, "v0=00"));
    }
}
