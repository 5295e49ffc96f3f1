//! `GET /v1/messages/{id or key}` and `GET /v1/messages`: an app reads its own messages only,
//! never a body or a full address, and pages stay stable while messages arrive.

use comms_domain::api_keys::{self, Role};
use comms_tests::fleet::sms_request;
use serde_json::Value;
use uuid::Uuid;

use super::{event, recorded};
use crate::gateway::Gateway;

async fn key(gw: &Gateway, name: &str) -> String {
    let created = api_keys::create(&gw.env.pool, name, Role::Enqueue)
        .await
        .expect("key");
    format!("Bearer {}", created.key)
}

async fn get(gw: &Gateway, auth: &str, path: &str) -> (u16, Value) {
    let response = gw
        .http
        .get(format!("{}{path}", gw.url))
        .header("authorization", auth)
        .send()
        .await
        .expect("gateway answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_app_reads_its_own_messages_and_another_apps_are_not_found() {
    let gw = Gateway::start(&[]).await;
    let (crm, billing) = (key(&gw, "crm-app").await, key(&gw, "billing").await);
    // Enqueued over HTTP by crm-app: the gateway records which app owns the key.
    let request = sms_request("crm-1", "+14155552671", Uuid::new_v4());
    let posted = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("authorization", &crm)
        .json(&request)
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), 202);
    // The sender records it (here by hand, as the sender's store would) and it fails.
    let id = recorded(&gw.env.pool, "crm-1", "crm", "failed").await;
    sqlx::query("UPDATE comms.messages SET failure_reason = 'provider_rejected', next_action = 'fix the number' WHERE id = $1")
        .bind(id)
        .execute(&gw.env.pool)
        .await
        .expect("failure");
    event(&gw.env.pool, id, "received", None).await;
    sqlx::query(
        "INSERT INTO comms.message_events (message_id, event_type, actor, source, reason, recovery_rule)
         VALUES ($1, 'failed', 'comms-sender', 'twilio', 'provider_rejected', 'not retried; the owner decides')",
    )
    .bind(id)
    .execute(&gw.env.pool)
    .await
    .expect("failed event");
    // Published over AMQP with source `billing`: billing's by its app name.
    let theirs = recorded(&gw.env.pool, "billing-1", "billing", "sent").await;

    for reference in ["crm-1".to_string(), id.to_string()] {
        let (status, body) = get(&gw, &crm, &format!("/v1/messages/{reference}")).await;
        assert_eq!(status, 200, "{reference}: {body}");
        assert_eq!(body["id"], Value::String(id.to_string()));
        assert_eq!(body["delivery_state"], "failed");
        assert_eq!(body["failure_reason"], "provider_rejected");
        assert_eq!(body["recovery_rule"], "not retried; the owner decides");
        assert_eq!(body["next_action"], "fix the number");
        assert_eq!(body["recipient"], "+1••••••••71");
        assert!(body["timestamps"]["received"].is_string());
        assert!(body["timestamps"]["failed"].is_string());
        let text = body.to_string();
        assert!(
            !text.contains("your code is") && !text.contains("+14155552671"),
            "no body, no address: {text}"
        );
    }
    for reference in [
        "billing-1".to_string(),
        theirs.to_string(),
        "nothing".into(),
    ] {
        let (status, body) = get(&gw, &crm, &format!("/v1/messages/{reference}")).await;
        assert_eq!(status, 404, "{reference} is not crm-app's: {body}");
        assert_eq!(body["reason"], "not_found");
    }
    let (status, body) = get(&gw, &billing, "/v1/messages/crm-1").await;
    assert_eq!(status, 404, "billing cannot read crm-app's message: {body}");
    // Nor learn its id by posting the same key: refused, since it could never be sent; crm-app
    // posting its own key again gets its message.
    let post = |auth: &str| {
        gw.http
            .post(format!("{}/v1/messages", gw.url))
            .header("authorization", auth)
            .json(&request)
            .send()
    };
    let taken = post(&billing).await.expect("post");
    assert_eq!(taken.status(), 409);
    let taken: Value = taken.json().await.expect("json");
    assert_eq!(taken["reason"], "idempotency_key_taken", "{taken}");
    assert!(!taken.to_string().contains(&id.to_string()), "{taken}");
    let again: Value = post(&crm).await.expect("post").json().await.expect("json");
    assert_eq!(
        again["message_id"],
        Value::String(id.to_string()),
        "{again}"
    );
    let (_, billing_list) = get(&gw, &billing, "/v1/messages").await;
    let keys: Vec<&str> = billing_list["messages"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["idempotency_key"].as_str())
        .collect();
    assert_eq!(keys, ["billing-1"]);
    gw.stop().await;
}

#[tokio::test]
async fn pages_are_stable_while_messages_arrive() {
    let gw = Gateway::start(&[]).await;
    let auth = key(&gw, "crm").await;
    for i in 0..5 {
        recorded(&gw.env.pool, &format!("page-{i}"), "crm", "sent").await;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut path = "/v1/messages?limit=2".to_string();
    let mut pages = 0;
    loop {
        let (status, body) = get(&gw, &auth, &path).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        for m in body["messages"].as_array().expect("messages") {
            seen.push(
                m["idempotency_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        if pages == 1 {
            // New messages arrive between pages.
            for i in 5..8 {
                recorded(&gw.env.pool, &format!("page-{i}"), "crm", "sent").await;
            }
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/messages?limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 20, "paging ends");
    }
    let expected: Vec<String> = (0..8).map(|i| format!("page-{i}")).collect();
    assert_eq!(
        seen, expected,
        "every message once, in order, none skipped or repeated"
    );

    let (status, body) = get(&gw, &auth, "/v1/messages?state=failed").await;
    assert_eq!(
        (status, body["messages"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, _) = get(&gw, &auth, "/v1/messages?limit=1000").await;
    assert_eq!(status, 200, "a large limit is capped, not refused");
    for (query, named) in [("state=bogus", "state: `bogus`"), ("limit=0", "limit:")] {
        let (status, body) = get(&gw, &auth, &format!("/v1/messages?{query}")).await;
        let message = body["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["reason"], "invalid_query", "{query}: {body}");
        assert!(message.starts_with(named), "{query}: {body}");
    }
    let (status, body) = get(&gw, &auth, "/v1/messages?cursor=garbage").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (400, Some("invalid_cursor"))
    );
    let (status, _) = get(&gw, &auth, "/v1/messages?colour=red").await;
    assert_eq!(status, 400, "unknown parameters are refused");
    // U+0000 cannot be stored: refused as the client's mistake, never a 503 "retry".
    let (status, body) = get(&gw, &auth, "/v1/messages/a%00b").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let outcome = gw
        .http
        .post(format!("{}/v1/outcomes", gw.url))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(r#"{"outcome_id": "crm-\u0000", "type": "booked", "source": "crm"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(outcome.status(), 422);
    let body: Value = outcome.json().await.expect("json");
    assert_eq!(body["reason"], "unstorable_character", "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn the_admin_api_registers_webhooks_for_oncall_keys_and_refuses_internal_urls() {
    let gw = Gateway::start(&[]).await;
    let enqueue = key(&gw, "crm").await;
    let oncall = format!(
        "Bearer {}",
        api_keys::create(&gw.env.pool, "pager", Role::Oncall)
            .await
            .expect("key")
            .key
    );
    let post = |auth: String, body: Value| {
        let request = gw
            .http
            .post(format!("{}/v1/webhooks", gw.url))
            .header("authorization", auth)
            .json(&body);
        async move { request.send().await.expect("answers") }
    };
    let internal = serde_json::json!({"app": "crm", "url": "http://169.254.169.254/x", "events": ["message.failed"]});
    assert_eq!(post(enqueue, internal.clone()).await.status(), 403);
    let refused = post(oncall.clone(), internal).await;
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["reason"], "invalid_webhook");
    let bad_event =
        serde_json::json!({"app": "crm", "url": "https://example.com/x", "events": ["delivered"]});
    assert_eq!(post(oncall.clone(), bad_event).await.status(), 422);
    let (status, listed) = get(&gw, &oncall, "/v1/webhooks").await;
    assert_eq!(
        (status, listed["webhooks"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    gw.stop().await;
}
