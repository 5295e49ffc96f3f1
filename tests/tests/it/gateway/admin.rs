//! The on-call admin API over the pause switch, and one-click unsubscribe links.

use comms_domain::api_keys::{self, Role};
use comms_domain::pause::store;
use comms_domain::unsubscribe::{Unsubscribe, sign};
use serde_json::json;
use uuid::Uuid;

use super::Gateway;

async fn key(gw: &Gateway, name: &str, role: Role) -> String {
    let created = api_keys::create(&gw.env.pool, name, role)
        .await
        .expect("key");
    format!("Bearer {}", created.key)
}

async fn post(gw: &Gateway, path: &str, auth: &str, body: serde_json::Value) -> reqwest::Response {
    gw.http
        .post(format!("{}{path}", gw.url))
        .header("authorization", auth)
        .json(&body)
        .send()
        .await
        .expect("gateway answers")
}

#[tokio::test]
async fn on_call_pauses_and_resumes_through_the_api_and_other_roles_are_refused() {
    let gw = Gateway::start(&[]).await;
    let oncall = key(&gw, "pagerduty", Role::Oncall).await;
    let enqueue = key(&gw, "crm", Role::Enqueue).await;

    let refused = post(&gw, "/v1/pause", &enqueue, json!({ "reason": "x" })).await;
    assert_eq!(refused.status(), 403);
    let anonymous = gw
        .http
        .get(format!("{}/v1/pause", gw.url))
        .send()
        .await
        .expect("answer");
    assert_eq!(anonymous.status(), 401);
    let no_reason = post(
        &gw,
        "/v1/pause",
        &oncall,
        json!({ "scope": "channel", "value": "sms" }),
    )
    .await;
    assert_eq!(no_reason.status(), 422);
    let bad_channel = post(
        &gw,
        "/v1/pause",
        &oncall,
        json!({ "scope": "channel", "value": "fax", "reason": "x" }),
    )
    .await;
    assert_eq!(bad_channel.status(), 422);

    let paused = post(&gw, "/v1/pause", &oncall, json!({ "scope": "channel", "value": "sms", "reason": "twilio incident", "actor": "maria", "for": "2h" })).await;
    assert_eq!(paused.status(), 201);
    let active = store::active(&gw.env.pool).await.expect("active");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].actor, "maria (key pagerduty)");
    assert!(active[0].expires_at.is_some());

    let listed: serde_json::Value = gw
        .http
        .get(format!("{}/v1/pause", gw.url))
        .header("authorization", &oncall)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["paused"][0]["pause"]["scope"]["value"], "sms");
    assert_eq!(listed["paused"][0]["held"], 0);

    let resumed = post(
        &gw,
        "/v1/resume",
        &oncall,
        json!({ "scope": "channel", "value": "sms", "reason": "recovered" }),
    )
    .await;
    assert_eq!(resumed.status(), 200);
    let again = post(
        &gw,
        "/v1/resume",
        &oncall,
        json!({ "scope": "channel", "value": "sms", "reason": "recovered" }),
    )
    .await;
    assert_eq!(again.status(), 404);
    let history: Vec<String> =
        sqlx::query_scalar("SELECT action FROM comms.pause_events ORDER BY id")
            .fetch_all(&gw.env.pool)
            .await
            .expect("history");
    assert_eq!(history, ["pause", "resume"]);
    gw.stop().await;
}

#[tokio::test]
async fn without_an_actor_in_the_body_the_key_s_name_is_the_actor() {
    let gw = Gateway::start(&[]).await;
    let oncall = key(&gw, "pagerduty", Role::Oncall).await;
    let paused = post(
        &gw,
        "/v1/pause",
        &oncall,
        json!({ "reason": "provider incident" }),
    )
    .await;
    assert_eq!(paused.status(), 201);
    let body: serde_json::Value = paused.json().await.expect("json");
    assert_eq!(body["pause"]["actor"], "pagerduty");
    let active = store::active(&gw.env.pool).await.expect("active");
    assert_eq!(active[0].actor, "pagerduty");
    // A blank actor is no actor.
    let resumed = post(
        &gw,
        "/v1/resume",
        &oncall,
        json!({ "reason": "provider recovered", "actor": "  " }),
    )
    .await;
    assert_eq!(resumed.status(), 200);
    let actors: Vec<(String, String)> =
        sqlx::query_as("SELECT action, actor FROM comms.pause_events ORDER BY id")
            .fetch_all(&gw.env.pool)
            .await
            .expect("history");
    let expected = [("pause", "pagerduty"), ("resume", "pagerduty")]
        .map(|(action, actor)| (action.to_string(), actor.to_string()));
    assert_eq!(actors, expected);
    gw.stop().await;
}

#[tokio::test]
async fn one_click_unsubscribe_needs_a_post_and_a_genuine_token() {
    let gw = Gateway::start(&[(
        "COMMS__REPLIES__UNSUBSCRIBE_SECRET",
        "test-unsubscribe-secret",
    )])
    .await;
    let contact: Uuid =
        sqlx::query_scalar("INSERT INTO comms.contacts (name) VALUES ('Dana') RETURNING id")
            .fetch_one(&gw.env.pool)
            .await
            .expect("contact");
    sqlx::query("INSERT INTO comms.contact_channels (contact_id, channel, address, consent_state) VALUES ($1, 'email', 'dana@example.com', 'express')")
        .bind(contact)
        .execute(&gw.env.pool)
        .await
        .expect("address");
    let consent = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT consent_state FROM comms.contact_channels WHERE contact_id = $1",
        )
        .bind(contact)
        .fetch_one(&gw.env.pool)
        .await
        .expect("consent")
    };
    let token = sign(
        b"test-unsubscribe-secret",
        &Unsubscribe {
            contact_id: contact,
            channel: "email".into(),
        },
    );
    let forged = sign(
        b"someone else's secret",
        &Unsubscribe {
            contact_id: contact,
            channel: "email".into(),
        },
    );

    let page = gw
        .http
        .get(format!("{}/unsubscribe/{token}", gw.url))
        .send()
        .await
        .expect("answer");
    assert_eq!(page.status(), 200);
    assert_eq!(consent().await, "express", "a GET never unsubscribes");
    let refused = gw
        .http
        .post(format!("{}/unsubscribe/{forged}", gw.url))
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 404);
    assert_eq!(consent().await, "express");
    let done = gw
        .http
        .post(format!("{}/unsubscribe/{token}", gw.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("answer");
    assert_eq!(done.status(), 200);
    assert_eq!(consent().await, "opted_out");
    gw.stop().await;
}
