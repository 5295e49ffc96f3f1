//! The status worker reads a callback by the content type the gateway forwarded
//! (`x-comms-content-type`), through the same `comms_domain::webhook_body` the gateway verified it
//! with: JSON is read as JSON, a form as a form, and what its content type does not describe is
//! rejected with its reason and kept — a form body labelled JSON is never read as a form.

use comms_runtime::amqp::Outgoing;
use comms_tests::eventually;
use lapin::types::{AMQPValue, FieldTable};

use super::{StatusRig, WAIT, seed_message};

async fn publish(rig: &StatusRig, content_type: Option<&str>, body: &[u8]) {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-comms-provider".into(),
        AMQPValue::LongString("twilio".into()),
    );
    if let Some(content_type) = content_type {
        headers.insert(
            "x-comms-content-type".into(),
            AMQPValue::LongString(content_type.into()),
        );
    }
    let env = &rig.env;
    env.publisher
        .publish(Outgoing {
            exchange: &env.topology.provider_exchange(),
            routing_key: "status.twilio",
            body,
            headers,
            ..Outgoing::default()
        })
        .await
        .expect("publish confirmed");
}

async fn rejected(rig: &StatusRig) -> Vec<String> {
    sqlx::query_scalar("SELECT reason FROM internal.rejected_input ORDER BY id")
        .fetch_all(&rig.env.pool)
        .await
        .expect("rejected")
}

#[tokio::test]
async fn a_callback_is_read_by_its_forwarded_content_type_or_rejected_and_kept() {
    let rig = StatusRig::start(&[]).await;
    let sid = "SMdddddddddddddddddddddddddddddd01";
    let victim = seed_message(
        &rig.env.pool,
        "sms",
        "+14155552671",
        "sent",
        Some("twilio"),
        Some(sid),
    )
    .await;
    // An opt-out as form fields, labelled JSON (what a forged request would have carried).
    let opt_out = format!("MessageSid={sid}&MessageStatus=undelivered&ErrorCode=21610");
    publish(&rig, Some("application/json"), opt_out.as_bytes()).await;
    publish(&rig, Some("text/plain"), opt_out.as_bytes()).await;
    publish(&rig, None, opt_out.as_bytes()).await;
    assert!(eventually(WAIT, || async { rejected(&rig).await.len() == 3 }).await);
    let reasons = rejected(&rig).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("invalid_payload: twilio: the body is not valid JSON")),
        "{reasons:?}"
    );
    let unsupported = reasons
        .iter()
        .filter(|r| r.starts_with("unsupported_content_type: twilio:"))
        .count();
    assert_eq!(unsupported, 2, "{reasons:?}");
    assert_eq!(rig.state(victim.id).await, "sent");
    assert_eq!(rig.consent(victim.contact_id, "sms").await, "implied");
    assert_eq!(rig.callbacks(victim.id).await, 0);

    // A JSON callback (signed through bodySHA256 at the gateway) is read as JSON and applied.
    let json = format!(r#"{{"MessageSid":"{sid}","MessageStatus":"delivered"}}"#);
    publish(&rig, Some("application/json"), json.as_bytes()).await;
    assert!(rig.applied(victim.id, 1).await);
    assert_eq!(rig.state(victim.id).await, "delivered");
    assert_eq!(rig.consent(victim.contact_id, "sms").await, "implied");
    rig.stop().await;
}
