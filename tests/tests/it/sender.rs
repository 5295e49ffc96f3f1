//! The sender against the real broker, database and sandbox provider: the happy path,
//! idempotency, provider failures and retries.

use std::time::Duration;

use comms_sandbox::FaultSpec;
use comms_tests::eventually;
use comms_tests::fleet::{SendFleet, sms_request};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn fleet() -> SendFleet {
    let fleet = SendFleet::start(&[]).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}, welcome aboard!")
        .await;
    fleet
}

#[tokio::test]
async fn an_sms_goes_out_once_with_its_provider_id_and_timeline() {
    let fleet = fleet().await;
    fleet
        .send(&sms_request("onboard-1", "+14155552671", fleet.client_id))
        .await;
    assert!(fleet.reaches("onboard-1", "sent").await);
    let delivered = fleet.sandbox().messages().await.expect("sandbox");
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].to, "+14155552671");
    assert_eq!(delivered[0].body, "Hi Dana, welcome aboard!");
    let (provider_id, encoding, segments): (String, String, i32) = sqlx::query_as(
        "SELECT provider_message_id, sms_encoding, sms_segments FROM comms.messages WHERE idempotency_key = 'onboard-1'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("message");
    assert_eq!(provider_id, delivered[0].id);
    assert_eq!((encoding.as_str(), segments), ("GSM-7", 1));
    assert_eq!(
        fleet.timeline("onboard-1").await,
        ["received", "dispatching", "sent"]
    );
    fleet.stop().await;
}

#[tokio::test]
async fn an_email_goes_out_with_its_rendered_subject() {
    let fleet = fleet().await;
    fleet
        .approved_template(
            "report-ready",
            "email",
            Some("Your {{ month }} report"),
            "Hello {{ name }}, it is ready.",
        )
        .await;
    fleet
        .send(&json!({
            "idempotency_key": "report-1",
            "channel": "email",
            "kind": "transactional",
            "recipient": { "email": "dana@example.com" },
            "template": { "name": "report-ready", "vars": { "name": "Dana", "month": "March" } },
            "record": { "type": "client", "id": fleet.client_id.to_string() },
            "owner": "ana", "source": "reporting", "trigger": "report.published"
        }))
        .await;
    assert!(fleet.reaches("report-1", "sent").await);
    let delivered = fleet.sandbox().messages().await.expect("sandbox");
    assert_eq!(delivered[0].subject.as_deref(), Some("Your March report"));
    assert_eq!(delivered[0].to, "dana@example.com");
    fleet.stop().await;
}

#[tokio::test]
async fn the_same_request_twice_is_dispatched_once() {
    let fleet = fleet().await;
    let request = sms_request("dup-1", "+14155552671", fleet.client_id);
    fleet.send(&request).await;
    fleet.send(&request).await;
    assert!(fleet.reaches("dup-1", "sent").await);
    // A third copy after it was sent changes nothing either.
    fleet.send(&request).await;
    let queue = fleet.env.topology.send_queue("sms").name;
    assert!(eventually(WAIT, || async { fleet.env.depth(&queue).await == 0 }).await);
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.messages")
        .fetch_one(&fleet.env.pool)
        .await
        .expect("count");
    assert_eq!(sent, 1);
    assert_eq!(fleet.sandbox().messages().await.expect("sandbox").len(), 1);
    fleet.stop().await;
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_then_sent() {
    let fleet = fleet().await;
    fleet
        .sandbox()
        .add_fault(&FaultSpec {
            status: Some(429),
            retry_after: Some(1),
            times: Some(1),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    fleet
        .send(&sms_request("busy-1", "+14155552671", fleet.client_id))
        .await;
    assert!(fleet.reaches("busy-1", "sent").await);
    assert_eq!(
        fleet.failure("busy-1").await,
        (None, 2),
        "two provider attempts; a sent message shows no failure (the 429 stays in its timeline)"
    );
    assert_eq!(
        fleet.timeline("busy-1").await,
        [
            "received",
            "dispatching",
            "retry_scheduled",
            "dispatching",
            "sent"
        ]
    );
    assert_eq!(fleet.sandbox().messages().await.expect("sandbox").len(), 1);
    fleet.stop().await;
}

#[tokio::test]
async fn three_server_errors_then_success() {
    let fleet = fleet().await;
    fleet
        .sandbox()
        .add_fault(&FaultSpec {
            status: Some(500),
            times: Some(3),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    fleet
        .send(&sms_request("flaky-1", "+14155552671", fleet.client_id))
        .await;
    assert!(fleet.reaches("flaky-1", "sent").await);
    assert_eq!(fleet.failure("flaky-1").await.1, 4);
    assert_eq!(fleet.sandbox().messages().await.expect("sandbox").len(), 1);
    fleet.stop().await;
}

#[tokio::test]
async fn a_permanent_unsubscribe_error_fails_at_once_and_opts_the_contact_out() {
    let fleet = fleet().await;
    fleet
        .sandbox()
        .add_fault(&FaultSpec {
            status: Some(400),
            error_code: Some(21610),
            recipient: Some("+14155552671".into()),
            times: Some(1),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    fleet
        .send(&sms_request("stop-1", "+14155552671", fleet.client_id))
        .await;
    assert!(fleet.reaches("stop-1", "failed").await);
    let (reason, attempts) = fleet.failure("stop-1").await;
    assert_eq!((reason.as_deref(), attempts), (Some("opted_out"), 1));
    assert_eq!(fleet.open_tasks("stop-1").await, 1);
    // The next message to the same number is refused before any provider call.
    fleet
        .send(&sms_request("stop-2", "+14155552671", fleet.client_id))
        .await;
    assert!(fleet.reaches("stop-2", "blocked").await);
    assert_eq!(
        fleet.failure("stop-2").await.0.as_deref(),
        Some("opted_out")
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

#[tokio::test]
async fn exhausted_retries_fail_with_a_reason_and_an_owner_task() {
    let fleet = SendFleet::start(&[("COMMS__SENDER__MAX_ATTEMPTS", "2")]).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}")
        .await;
    fleet
        .sandbox()
        .add_fault(&FaultSpec {
            status: Some(503),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    fleet
        .send(&sms_request("down-1", "+14155552671", fleet.client_id))
        .await;
    assert!(fleet.reaches("down-1", "failed").await);
    let (reason, attempts) = fleet.failure("down-1").await;
    assert_eq!(attempts, 2);
    assert!(
        reason
            .expect("reason")
            .starts_with("retries_exhausted: twilio 503")
    );
    assert_eq!(fleet.open_tasks("down-1").await, 1);
    let next_action: Option<String> = sqlx::query_scalar(
        "SELECT next_action FROM comms.messages WHERE idempotency_key = 'down-1'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("next action");
    assert!(next_action.is_some());
    fleet.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_rejected_with_reasons_while_valid_ones_go_out() {
    let fleet = fleet().await;
    let client = fleet.client_id;
    fleet
        .send(&sms_request("ok-1", "+14155552671", client))
        .await;
    fleet.send_raw("send.sms", b"{ not json").await;
    let mut unknown_channel = sms_request("bad-channel", "+14155552671", client);
    unknown_channel["channel"] = json!("fax");
    fleet
        .send_raw("send.sms", unknown_channel.to_string().as_bytes())
        .await;
    let mut no_owner = sms_request("bad-owner", "+14155552671", client);
    no_owner.as_object_mut().expect("object").remove("owner");
    fleet.send(&no_owner).await;
    fleet
        .send(&sms_request("bad-phone", "+1 555", client))
        .await;
    let mut huge = sms_request("bad-size", "+14155552671", client);
    huge["template"]["vars"]["padding"] = json!("x".repeat(70_000));
    fleet.send(&huge).await;
    fleet
        .send(&sms_request("ok-2", "+14155552672", client))
        .await;

    assert!(fleet.reaches("ok-1", "sent").await);
    assert!(fleet.reaches("ok-2", "sent").await);
    assert!(
        eventually(WAIT, || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM internal.rejected_input")
                .fetch_one(&fleet.env.pool)
                .await
                .expect("count")
                == 5
        })
        .await
    );
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM internal.rejected_input ORDER BY id")
            .fetch_all(&fleet.env.pool)
            .await
            .expect("reasons");
    // Messages are handled concurrently, so reasons are matched, not ordered.
    for expected in [
        "invalid_json: $: expected a JSON object (the send request); found text that is not JSON",
        "invalid_request: channel: expected one of sms, email, portal; found a string",
        "invalid_request: owner: expected a string of 1–200 characters, not blank; found nothing",
        "invalid_request: recipient.phone:",
        "payload_too_large: $: expected at most 65536 bytes; found",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(expected)),
            "{expected} not in {reasons:?}"
        );
    }
    // Each is recorded before it is dead-lettered: the queue holds the fifth a moment later.
    let dead = fleet.env.topology.dead_queue();
    assert!(
        eventually(WAIT, || async { fleet.env.depth(&dead).await == 5 }).await,
        "the dead-letter queue holds {} of the 5",
        fleet.env.depth(&dead).await
    );
    assert_eq!(fleet.sandbox().messages().await.expect("sandbox").len(), 2);
    fleet.stop().await;
}
