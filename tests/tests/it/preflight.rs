//! Every preflight rule of the sender, passing and failing, against the real stack. A refused
//! message is `blocked` with a named reason, an event and an owner task, and nothing reaches the
//! provider.

use comms_tests::fleet::{SendFleet, sms_request};
use serde_json::json;
use uuid::Uuid;

async fn fleet() -> SendFleet {
    let fleet = SendFleet::start(&[]).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}!")
        .await;
    fleet
}

async fn assert_blocked(fleet: &SendFleet, key: &str, reason: &str) {
    assert!(fleet.reaches(key, "blocked").await, "{key} was not blocked");
    assert_eq!(fleet.failure(key).await.0.as_deref(), Some(reason));
    assert_eq!(
        fleet.open_tasks(key).await,
        1,
        "{key}: the owner gets a task"
    );
    assert!(fleet.timeline(key).await.contains(&"blocked".to_string()));
}

#[tokio::test]
async fn a_message_for_a_record_that_does_not_exist_is_blocked() {
    let fleet = fleet().await;
    fleet
        .send(&sms_request("ghost", "+14155552671", Uuid::new_v4()))
        .await;
    assert_blocked(&fleet, "ghost", "record_not_found").await;
    assert!(
        fleet
            .sandbox()
            .messages()
            .await
            .expect("sandbox")
            .is_empty()
    );
    fleet.stop().await;
}

#[tokio::test]
async fn opted_out_and_suppressed_contacts_are_never_sent_to() {
    let fleet = fleet().await;
    for (phone, state) in [
        ("+14155550101", "opted_out"),
        ("+14155550102", "suppressed"),
    ] {
        fleet.sms_contact(phone, state).await;
        fleet
            .send(&sms_request(state, phone, fleet.client_id))
            .await;
        assert_blocked(&fleet, state, state).await;
    }
    assert!(
        fleet
            .sandbox()
            .messages()
            .await
            .expect("sandbox")
            .is_empty()
    );
    fleet.stop().await;
}

#[tokio::test]
async fn outreach_needs_express_consent() {
    let fleet = SendFleet::start_at(&[], "2026-11-26T15:00:00Z".parse().expect("time")).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}!")
        .await;
    let mut without = sms_request("cold", "+14155550111", fleet.client_id);
    without["kind"] = json!("outreach");
    fleet.send(&without).await;
    assert_blocked(&fleet, "cold", "consent_missing").await;

    let mut with = sms_request("warm", "+14155550112", fleet.client_id);
    with["kind"] = json!("outreach");
    with["recipient"]["time_zone"] = json!("UTC");
    with["consent"] =
        json!({ "basis": "express", "source": "webform", "captured_at": "2026-11-01T10:00:00Z" });
    fleet.send(&with).await;
    assert!(fleet.reaches("warm", "sent").await);
    let stored: String = sqlx::query_scalar(
        "SELECT consent_state FROM comms.contact_channels WHERE address = '+14155550112'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("consent");
    assert_eq!(
        stored, "express",
        "the consent evidence is kept on the contact"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn template_problems_each_have_their_reason() {
    let fleet = fleet().await;
    sqlx::query("INSERT INTO comms.templates (name, version, channel, body, created_by) VALUES ('draft-only', 1, 'sms', 'Hi', 'bo')")
        .execute(&fleet.env.pool)
        .await
        .expect("draft");
    fleet
        .approved_template("email-only", "email", Some("S"), "Body")
        .await;
    fleet
        .approved_template("needs-link", "sms", None, "Hi {{ name }}, see {{ link }}")
        .await;
    let cases = [
        ("t-missing", "no-such-template", "template_not_found"),
        ("t-draft", "draft-only", "template_not_approved"),
        ("t-channel", "email-only", "template_channel_mismatch"),
        ("t-vars", "needs-link", "template_render_failed"),
    ];
    for (key, template, _) in cases {
        let mut request = sms_request(key, "+14155552671", fleet.client_id);
        request["template"]["name"] = json!(template);
        fleet.send(&request).await;
    }
    for (key, _, reason) in cases {
        assert_blocked(&fleet, key, reason).await;
    }
    assert!(
        fleet
            .sandbox()
            .messages()
            .await
            .expect("sandbox")
            .is_empty()
    );
    fleet.stop().await;
}

#[tokio::test]
async fn kinds_that_need_approval_wait_for_it_and_then_go_out() {
    let fleet = fleet().await;
    let mut notice = sms_request("incident-1", "+14155552671", fleet.client_id);
    notice["kind"] = json!("incident_notice");
    fleet.send(&notice).await;
    assert!(fleet.reaches("incident-1", "awaiting_approval").await);
    assert_eq!(fleet.open_tasks("incident-1").await, 1);
    // A redelivery while waiting neither sends nor opens a second task.
    fleet.send(&notice).await;
    let (id, subject, body): (Uuid, Option<String>, String) = sqlx::query_as(
        "SELECT id, subject, body FROM comms.messages WHERE idempotency_key = 'incident-1'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("message");
    let queue = fleet.env.topology.send_queue("sms").name;
    assert!(
        comms_tests::eventually(std::time::Duration::from_secs(20), || async {
            fleet.env.depth(&queue).await == 0
        })
        .await
    );
    assert_eq!(fleet.open_tasks("incident-1").await, 1);
    assert!(
        fleet
            .sandbox()
            .messages()
            .await
            .expect("sandbox")
            .is_empty()
    );

    sqlx::query(
        "INSERT INTO comms.message_approvals (message_id, content_hash, decision, decided_by, requested_at)
         VALUES ($1, $2, 'approved', 'ana', now())",
    )
    .bind(id)
    .bind(comms_sender::approval_hash(subject.as_deref(), &body))
    .execute(&fleet.env.pool)
    .await
    .expect("approval");
    fleet.send(&notice).await;
    assert!(fleet.reaches("incident-1", "sent").await);
    fleet.stop().await;
}

#[tokio::test]
async fn outreach_sms_at_night_waits_for_the_morning_in_the_recipients_zone() {
    // 23:30 in New York.
    let fleet = SendFleet::start_at(&[], "2026-11-27T04:30:00Z".parse().expect("time")).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}!")
        .await;
    let mut request = sms_request("late", "+14155552671", fleet.client_id);
    request["kind"] = json!("review_request");
    request["recipient"]["time_zone"] = json!("America/New_York");
    request["consent"] =
        json!({ "basis": "express", "source": "checkout", "captured_at": "2026-11-01T10:00:00Z" });
    fleet.send(&request).await;
    assert!(fleet.reaches("late", "deferred").await);
    let send_after: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT send_after FROM comms.messages WHERE idempotency_key = 'late'")
            .fetch_one(&fleet.env.pool)
            .await
            .expect("send_after");
    assert_eq!(
        send_after,
        "2026-11-27T13:00:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .expect("time")
    );
    assert!(
        fleet
            .sandbox()
            .messages()
            .await
            .expect("sandbox")
            .is_empty()
    );

    // Morning comes; the next delivery of the request goes out.
    fleet
        .clock
        .as_ref()
        .expect("manual clock")
        .set("2026-11-27T13:05:00Z".parse().expect("time"));
    fleet.send(&request).await;
    assert!(fleet.reaches("late", "sent").await);
    assert_eq!(fleet.sandbox().messages().await.expect("sandbox").len(), 1);
    fleet.stop().await;
}

#[tokio::test]
async fn a_message_caught_by_a_pause_is_held_not_sent_and_not_counted() {
    let fleet = fleet().await;
    fleet.pause(comms_domain::pause::Scope::Global, None).await;
    fleet
        .send(&sms_request("paused-1", "+14155552671", fleet.client_id))
        .await;
    assert!(fleet.reaches("paused-1", "held").await);
    assert_eq!(
        fleet.failure("paused-1").await.1,
        0,
        "a hold is not an attempt"
    );
    assert!(
        fleet
            .sandbox()
            .messages()
            .await
            .expect("sandbox")
            .is_empty()
    );
    fleet.stop().await;
}
