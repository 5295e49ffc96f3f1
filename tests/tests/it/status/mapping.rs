//! Every Twilio `MessageStatus` and every SendGrid event, mapped to the canonical state, the
//! failure reason, consent and owner tasks; forward-only under late callbacks; idempotent under
//! duplicates.

use serde_json::json;

use super::{StatusRig, seed_message};

struct Expect {
    state: &'static str,
    reason: Option<&'static str>,
    consent: &'static str,
    tasks: i64,
}

const fn expect(
    state: &'static str,
    reason: Option<&'static str>,
    consent: &'static str,
    tasks: i64,
) -> Expect {
    Expect {
        state,
        reason,
        consent,
        tasks,
    }
}

#[tokio::test]
async fn every_twilio_status_maps_to_one_canonical_state() {
    let rig = StatusRig::start(&[]).await;
    let cases: [(&str, Option<&str>, Expect); 9] = [
        ("queued", None, expect("sent", None, "implied", 0)),
        ("sending", None, expect("sent", None, "implied", 0)),
        ("sent", None, expect("sent", None, "implied", 0)),
        ("delivered", None, expect("delivered", None, "implied", 0)),
        (
            "undelivered",
            Some("30003"),
            expect("undelivered", Some("30003"), "implied", 1),
        ),
        (
            "failed",
            Some("30008"),
            expect("failed", Some("30008"), "implied", 1),
        ),
        ("read", None, expect("delivered", None, "implied", 0)),
        (
            "canceled",
            None,
            expect("failed", Some("canceled"), "implied", 1),
        ),
        (
            "undelivered",
            Some("21610"),
            expect("undelivered", Some("21610"), "opted_out", 1),
        ),
    ];
    let mut seeded = Vec::new();
    for (i, (status, error, _)) in cases.iter().enumerate() {
        let sid = format!("SM{:032x}", i + 1);
        let phone = format!("+1415555{:04}", 1000 + i);
        let message = seed_message(
            &rig.env.pool,
            "sms",
            &phone,
            "sent",
            Some("twilio"),
            Some(&sid),
        )
        .await;
        let mut params = vec![
            ("MessageSid", sid.as_str()),
            ("MessageStatus", *status),
            ("To", phone.as_str()),
        ];
        if let Some(code) = error {
            params.push(("ErrorCode", code));
        }
        rig.twilio(&params).await;
        seeded.push(message);
    }
    for ((status, _, want), message) in cases.iter().zip(&seeded) {
        assert!(rig.applied(message.id, 1).await, "{status} was applied");
        assert_eq!(rig.state(message.id).await, want.state, "{status}");
        let (failure, next_action, opt_out) = rig.outcome(message.id).await;
        match want.reason {
            Some(fragment) => {
                assert!(
                    failure.as_deref().is_some_and(|f| f.contains(fragment)),
                    "{status}: {failure:?}"
                );
                assert!(next_action.is_some(), "{status} names a next action");
            }
            None => assert_eq!(failure, None, "{status}"),
        }
        assert_eq!(
            rig.consent(message.contact_id, "sms").await,
            want.consent,
            "{status}"
        );
        let expected_opt_out = if want.consent == "opted_out" {
            "opted_out"
        } else {
            "none"
        };
        assert_eq!(opt_out, expected_opt_out, "{status}");
        assert_eq!(rig.tasks(message.id).await, want.tasks, "{status}");
    }
    // The raw payloads are kept, internally, one per applied callback.
    let payloads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM internal.provider_payloads WHERE provider = 'twilio' AND kind = 'status'",
    )
    .fetch_one(&rig.env.pool)
    .await
    .expect("payloads");
    assert_eq!(payloads, 9);
    rig.stop().await;
}

#[tokio::test]
async fn every_sendgrid_event_maps_to_one_canonical_state() {
    let rig = StatusRig::start(&[]).await;
    let cases: Vec<(serde_json::Value, Expect)> = vec![
        (
            json!({"event": "processed"}),
            expect("sent", None, "implied", 0),
        ),
        (
            json!({"event": "deferred", "response": "400 try again later", "attempt": "5"}),
            expect("sent", None, "implied", 0),
        ),
        (
            json!({"event": "delivered", "response": "250 OK"}),
            expect("delivered", None, "implied", 0),
        ),
        (
            json!({"event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 no such user"}),
            expect("failed", Some("5.1.1"), "suppressed", 1),
        ),
        (
            json!({"event": "bounce", "type": "blocked", "status": "5.7.1", "reason": "550 5.7.1 rejected"}),
            expect("undelivered", Some("5.7.1"), "implied", 1),
        ),
        (
            json!({"event": "dropped", "reason": "Bounced Address"}),
            expect("failed", Some("Bounced Address"), "suppressed", 1),
        ),
        (
            json!({"event": "dropped", "reason": "Unsubscribed Address"}),
            expect("failed", Some("Unsubscribed Address"), "opted_out", 1),
        ),
        (
            json!({"event": "open"}),
            expect("delivered", None, "implied", 0),
        ),
        (
            json!({"event": "click", "url": "https://example.com/"}),
            expect("delivered", None, "implied", 0),
        ),
        (
            json!({"event": "spamreport"}),
            expect("delivered", None, "suppressed", 1),
        ),
        (
            json!({"event": "unsubscribe"}),
            expect("delivered", None, "opted_out", 1),
        ),
        (
            json!({"event": "group_unsubscribe", "asm_group_id": 10}),
            expect("delivered", None, "opted_out", 1),
        ),
        (
            json!({"event": "group_resubscribe", "asm_group_id": 10}),
            expect("delivered", None, "implied", 1),
        ),
    ];
    let mut batch = Vec::new();
    let mut seeded = Vec::new();
    for (i, (event, _)) in cases.iter().enumerate() {
        let x_message_id = format!("XMSG{i:04}");
        let email = format!("person{i}@example.com");
        let message = seed_message(
            &rig.env.pool,
            "email",
            &email,
            "sent",
            Some("sendgrid"),
            Some(&x_message_id),
        )
        .await;
        let mut event = event.clone();
        event["email"] = json!(email);
        event["timestamp"] = json!(1_700_000_000 + i);
        event["sg_event_id"] = json!(format!("evt-{i}"));
        event["sg_message_id"] = json!(format!("{x_message_id}.filter0001.16648.5515E0B88.0"));
        // Most events carry our id as a custom arg; every third only the provider's id.
        if i % 3 != 0 {
            event["comms_message_id"] = json!(message.id.to_string());
        }
        batch.push(event);
        seeded.push(message);
    }
    rig.sendgrid(&json!(batch)).await;
    for ((event, want), message) in cases.iter().zip(&seeded) {
        let name = event["event"].as_str().unwrap_or("?");
        assert!(rig.applied(message.id, 1).await, "{name} was applied");
        assert_eq!(rig.state(message.id).await, want.state, "{name}");
        let (failure, _, opt_out) = rig.outcome(message.id).await;
        match want.reason {
            Some(fragment) => assert!(
                failure.as_deref().is_some_and(|f| f.contains(fragment)),
                "{name}: {failure:?}"
            ),
            None => assert_eq!(failure, None, "{name}"),
        }
        assert_eq!(
            rig.consent(message.contact_id, "email").await,
            want.consent,
            "{name}"
        );
        let expected_opt_out = match want.consent {
            "implied" => "none",
            other => other,
        };
        assert_eq!(opt_out, expected_opt_out, "{name}");
        assert_eq!(rig.tasks(message.id).await, want.tasks, "{name}");
    }
    rig.stop().await;
}

#[tokio::test]
async fn an_asynchronous_bounce_without_ids_is_matched_by_address() {
    let rig = StatusRig::start(&[]).await;
    let message = seed_message(
        &rig.env.pool,
        "email",
        "gone@example.com",
        "delivered",
        Some("sendgrid"),
        Some("XMSGASYNC"),
    )
    .await;
    rig.sendgrid(&json!([{ "event": "bounce", "email": "Gone@Example.com", "type": "bounce", "status": "5.1.1", "reason": "mailbox gone" }]))
        .await;
    assert!(rig.applied(message.id, 1).await);
    // Already delivered: the state stays, but the address is suppressed.
    assert_eq!(rig.state(message.id).await, "delivered");
    assert_eq!(rig.consent(message.contact_id, "email").await, "suppressed");
    assert_eq!(
        rig.timeline(message.id).await,
        ["provider_status", "suppressed"]
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_late_sent_after_delivered_does_not_undo_it() {
    let rig = StatusRig::start(&[]).await;
    let sid = "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01";
    let message = seed_message(
        &rig.env.pool,
        "sms",
        "+14155550101",
        "sent",
        Some("twilio"),
        Some(sid),
    )
    .await;
    rig.twilio(&[("MessageSid", sid), ("MessageStatus", "delivered")])
        .await;
    assert!(rig.applied(message.id, 1).await);
    rig.twilio(&[("MessageSid", sid), ("MessageStatus", "sent")])
        .await;
    rig.twilio(&[
        ("MessageSid", sid),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
    ])
    .await;
    assert!(rig.applied(message.id, 3).await);
    assert_eq!(rig.state(message.id).await, "delivered");
    let (failure, _, _) = rig.outcome(message.id).await;
    assert_eq!(failure, None);
    let timeline = rig.timeline(message.id).await;
    assert_eq!(timeline[0], "delivered");
    assert_eq!(timeline[1..], ["provider_status", "provider_status"]);
    rig.stop().await;
}

#[tokio::test]
async fn the_same_callback_twice_is_applied_once() {
    // One message at a time, in order, so the duplicate is handled before the sentinel.
    let rig = StatusRig::start(&[
        ("COMMS__CONSUMER__CONCURRENCY", "1"),
        ("COMMS__CONSUMER__PREFETCH", "1"),
    ])
    .await;
    let sid = "SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb02";
    let message = seed_message(
        &rig.env.pool,
        "sms",
        "+14155550102",
        "sent",
        Some("twilio"),
        Some(sid),
    )
    .await;
    let delivered = [("MessageSid", sid), ("MessageStatus", "delivered")];
    rig.twilio(&delivered).await;
    rig.twilio(&delivered).await;
    // SendGrid retries re-send whole batches: the same sg_event_id twice in one batch and again.
    let email = seed_message(
        &rig.env.pool,
        "email",
        "dup@example.com",
        "sent",
        Some("sendgrid"),
        Some("XMSGDUP"),
    )
    .await;
    let event = json!({ "event": "delivered", "sg_event_id": "same-event", "comms_message_id": email.id.to_string() });
    rig.sendgrid(&json!([event.clone(), event.clone()])).await;
    rig.sendgrid(&json!([event])).await;
    // The sentinels, published last.
    rig.twilio(&[("MessageSid", sid), ("MessageStatus", "read")])
        .await;
    rig.sendgrid(&json!([{ "event": "open", "sg_event_id": "sentinel", "comms_message_id": email.id.to_string() }]))
        .await;
    assert!(rig.applied(message.id, 2).await);
    assert!(rig.applied(email.id, 2).await);
    assert_eq!(rig.callbacks(message.id).await, 2);
    assert_eq!(rig.timeline(message.id).await, ["delivered", "engagement"]);
    assert_eq!(rig.callbacks(email.id).await, 2);
    assert_eq!(rig.timeline(email.id).await, ["delivered", "engagement"]);
    rig.stop().await;
}
