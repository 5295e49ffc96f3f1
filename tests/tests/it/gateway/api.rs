//! The enqueue API: API keys and roles (401/403), validation (422 with every field error),
//! publishing (202, confirmed, canonical), idempotency, and the audit of every authenticated call.

use clap::Parser;
use comms_domain::api_keys::{self, Role};
use comms_domain::contract::{MAX_PAYLOAD_BYTES, canonical_bytes, parse_send_request};
use comms_tests::fleet::sms_request;
use serde_json::json;
use uuid::Uuid;

use super::{Gateway, header};
use crate::status::seed_message;

async fn post(gw: &Gateway, auth: Option<&str>, body: &serde_json::Value) -> reqwest::Response {
    let mut request = gw.http.post(format!("{}/v1/messages", gw.url)).json(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request.send().await.expect("gateway answers")
}

async fn key(gw: &Gateway, name: &str, role: Role) -> String {
    let created = api_keys::create(&gw.env.pool, name, role)
        .await
        .expect("key");
    format!("Bearer {}", created.key)
}

async fn audit(gw: &Gateway) -> Vec<(String, String, bool)> {
    sqlx::query_as("SELECT key_name, path, allowed FROM comms.api_audit ORDER BY id")
        .fetch_all(&gw.env.pool)
        .await
        .expect("audit")
}

#[tokio::test]
async fn calls_without_a_valid_key_are_401() {
    let gw = Gateway::start(&[]).await;
    let request = sms_request("k-401", "+14155552671", Uuid::new_v4());
    let none = post(&gw, None, &request).await;
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        post(&gw, Some("Basic dXNlcjpwYXNz"), &request)
            .await
            .status(),
        401
    );
    assert_eq!(
        post(&gw, Some("Bearer cfk_not-a-key"), &request)
            .await
            .status(),
        401
    );
    let revoked = key(&gw, "old-crm", Role::Enqueue).await;
    api_keys::revoke(&gw.env.pool, "old-crm")
        .await
        .expect("revoke");
    let response = post(&gw, Some(&revoked), &request).await;
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["reason"], "unauthenticated");
    assert!(
        gw.env
            .drain(&gw.env.topology.send_queue("sms").name)
            .await
            .is_empty()
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_key_without_the_enqueue_role_is_403_and_audited() {
    let gw = Gateway::start(&[]).await;
    let request = sms_request("k-403", "+14155552671", Uuid::new_v4());
    for (name, role) in [("pager", Role::Oncall), ("boss", Role::Owner)] {
        let auth = key(&gw, name, role).await;
        let response = post(&gw, Some(&auth), &request).await;
        assert_eq!(response.status(), 403);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["reason"], "forbidden");
    }
    assert!(
        gw.env
            .drain(&gw.env.topology.send_queue("sms").name)
            .await
            .is_empty()
    );
    assert_eq!(
        audit(&gw).await,
        [
            ("pager".to_string(), "/v1/messages".to_string(), false),
            ("boss".to_string(), "/v1/messages".to_string(), false)
        ]
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_invalid_request_is_422_with_every_field_error() {
    let gw = Gateway::start(&[]).await;
    let auth = key(&gw, "crm", Role::Enqueue).await;
    let bad = json!({
        "idempotency_key": "",
        "channel": "sms",
        "kind": "transactional",
        "recipient": { "phone": "555" },
        "template": { "name": "welcome", "vars": {} },
        "record": { "type": "client", "id": "not-a-uuid" },
        "owner": " ", "source": "crm", "trigger": "t"
    });
    let response = post(&gw, Some(&auth), &bad).await;
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["reason"], "invalid_request");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    assert!(fields.len() >= 3, "{body}");
    for field in ["idempotency_key", "recipient.phone", "record.id", "owner"] {
        assert!(fields.contains(&field), "{field} missing from {body}");
    }
    assert!(body["errors"][0]["problem"].is_string());
    let not_json = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("answer");
    assert_eq!(not_json.status(), 422);
    let body: serde_json::Value = not_json.json().await.expect("json");
    assert_eq!(body["reason"], "invalid_json");
    assert!(
        gw.env
            .drain(&gw.env.topology.send_queue("sms").name)
            .await
            .is_empty()
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_valid_request_is_published_confirmed_and_answered_202() {
    let gw = Gateway::start(&[]).await;
    let auth = key(&gw, "crm", Role::Enqueue).await;
    let request = sms_request("k-202", "+1 (415) 555-2671", Uuid::new_v4());
    let response = post(&gw, Some(&auth), &request).await;
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.expect("json");
    // No message id exists before the sender records the message: the key is what to follow.
    assert_eq!(
        body,
        json!({ "idempotency_key": "k-202", "status": "accepted" })
    );
    let queued = gw.env.drain(&gw.env.topology.send_queue("sms").name).await;
    assert_eq!(queued.len(), 1);
    // The canonical form: it parses, and the phone number is normalised.
    let published = parse_send_request(&queued[0].0).expect("a valid send request");
    assert_eq!(published.idempotency_key, "k-202");
    assert_eq!(published.recipient.phone(), Some("+14155552671"));
    assert_eq!(
        header(&queued[0].1, comms_gateway::SUBMITTED_BY_HEADER).as_deref(),
        Some("crm")
    );
    assert_eq!(
        audit(&gw).await,
        [("crm".to_string(), "/v1/messages".to_string(), true)]
    );
    gw.stop().await;
}

/// An SMS request whose `template.vars.pad` is `pad` bytes of ASCII.
fn padded(key: &str, pad: usize) -> serde_json::Value {
    let mut request = sms_request(key, "+1 (415) 555-2671", Uuid::nil());
    request["template"]["vars"]["pad"] = json!("x".repeat(pad));
    request
}

/// The length of the normalised copy the gateway would publish for `request`, if publishable.
fn published_len(request: &serde_json::Value) -> Option<usize> {
    let raw = serde_json::to_vec(request).expect("json");
    let valid = parse_send_request(&raw).expect("valid as sent");
    canonical_bytes(&valid).ok().map(|bytes| bytes.len())
}

#[tokio::test]
async fn the_sender_s_limit_applies_to_the_published_copy_at_the_limit_and_one_byte_over() {
    let gw = Gateway::start(&[]).await;
    let auth = key(&gw, "crm", Role::Enqueue).await;
    let queue = gw.env.topology.send_queue("sms").name;
    let sent_len = |key: &str| serde_json::to_vec(&padded(key, 0)).expect("json").len();

    // The case: a request of exactly 64 KiB as sent, longer once normalised.
    let sent_at_limit = padded("k-sent", MAX_PAYLOAD_BYTES - sent_len("k-sent"));
    assert_eq!(
        serde_json::to_vec(&sent_at_limit).expect("json").len(),
        MAX_PAYLOAD_BYTES
    );
    let response = post(&gw, Some(&auth), &sent_at_limit).await;
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["reason"], "payload_too_large");
    assert!(
        body["errors"][0]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("normalised")),
        "{body}"
    );

    // The published copy one byte over: refused, nothing published.
    let base = |key: &str| published_len(&padded(key, 0)).expect("small request");
    let over = padded("k-over", MAX_PAYLOAD_BYTES - base("k-over") + 1);
    assert_eq!(published_len(&over), None, "over the limit");
    assert_eq!(post(&gw, Some(&auth), &over).await.status(), 413);
    assert!(gw.env.drain(&queue).await.is_empty());

    // The published copy exactly at the limit: accepted, and the sender's check passes on it.
    let at_limit = padded("k-at", MAX_PAYLOAD_BYTES - base("k-at"));
    assert_eq!(published_len(&at_limit), Some(MAX_PAYLOAD_BYTES));
    assert_eq!(post(&gw, Some(&auth), &at_limit).await.status(), 202);
    let queued = gw.env.drain(&queue).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0.len(), MAX_PAYLOAD_BYTES);
    assert!(parse_send_request(&queued[0].0).is_ok());
    gw.stop().await;
}

#[tokio::test]
async fn a_request_already_recorded_is_answered_with_its_id_and_not_published_again() {
    let gw = Gateway::start(&[]).await;
    let auth = key(&gw, "crm", Role::Enqueue).await;
    let seeded = seed_message(
        &gw.env.pool,
        "sms",
        "+14155552671",
        "sent",
        Some("twilio"),
        None,
    )
    .await;
    let existing_key: String =
        sqlx::query_scalar("SELECT idempotency_key FROM comms.messages WHERE id = $1")
            .bind(seeded.id)
            .fetch_one(&gw.env.pool)
            .await
            .expect("key");
    let request = sms_request(&existing_key, "+14155552671", Uuid::new_v4());
    let response = post(&gw, Some(&auth), &request).await;
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["message_id"], json!(seeded.id.to_string()));
    assert_eq!(body["status"], "accepted");
    assert!(
        gw.env
            .drain(&gw.env.topology.send_queue("sms").name)
            .await
            .is_empty()
    );
    gw.stop().await;
}

#[tokio::test]
async fn commsctl_keys_create_stores_only_a_hash_of_a_working_key() {
    let gw = Gateway::start(&[]).await;
    let cli = commsctl::Cli::parse_from([
        "commsctl",
        "keys",
        "create",
        "--name",
        "reporting",
        "--role",
        "enqueue",
    ]);
    commsctl::run_with(cli, &gw.env.settings)
        .await
        .expect("keys create");
    let (role, hash): (String, String) =
        sqlx::query_as("SELECT role, key_hash FROM comms.api_keys WHERE name = 'reporting'")
            .fetch_one(&gw.env.pool)
            .await
            .expect("stored");
    assert_eq!(role, "enqueue");
    assert_eq!(hash.len(), 64);
    assert!(!hash.starts_with(api_keys::KEY_PREFIX));
    let bad_role = commsctl::Cli::try_parse_from([
        "commsctl", "keys", "create", "--name", "x", "--role", "admin",
    ]);
    assert!(bad_role.is_err());
    let revoke = commsctl::Cli::parse_from(["commsctl", "keys", "revoke", "--name", "reporting"]);
    commsctl::run_with(revoke, &gw.env.settings)
        .await
        .expect("revoke");
    let active: i64 =
        sqlx::query_scalar("SELECT count(*) FROM comms.api_keys WHERE revoked_at IS NULL")
            .fetch_one(&gw.env.pool)
            .await
            .expect("count");
    assert_eq!(active, 0);
    gw.stop().await;
}
