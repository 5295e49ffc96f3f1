//! Callbacks that outrun the sender: retried while the message may still appear, matched when it
//! does, and parked as `unknown_message` (never dropped) when it does not.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use comms_runtime::runtime::{Handler, Incoming, Outcome};
use comms_runtime::topology::RETRY_TIERS;
use comms_status::StatusHandler;
use comms_status::handler::EARLY_RECHECKS;
use comms_tests::eventually;
use lapin::types::{AMQPValue, FieldTable};

use super::{StatusRig, WAIT, seed_message};

fn incoming(body: &[u8], received_at: chrono::DateTime<Utc>, retry_attempt: u32) -> Incoming {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-comms-provider".into(),
        AMQPValue::LongString("twilio".into()),
    );
    headers.insert(
        "x-comms-content-type".into(),
        AMQPValue::LongString(comms_domain::webhook_body::FORM.into()),
    );
    let at = received_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    headers.insert(
        "x-comms-received-at".into(),
        AMQPValue::LongString(at.as_str().into()),
    );
    Incoming {
        queue: "comms.status".into(),
        routing_key: "status.twilio".into(),
        body: body.to_vec(),
        headers,
        message_id: None,
        redelivered: false,
        retry_attempt,
    }
}

#[tokio::test]
async fn the_handler_retries_then_parks_then_matches() {
    let env = comms_tests::TestEnv::new().await;
    let handler = StatusHandler {
        pool: env.pool.clone(),
        unknown_retry_for: Duration::from_secs(600),
        max_retries: 12,
    };
    let sid = "SMcccccccccccccccccccccccccccccc03";
    let body = format!("MessageSid={sid}&MessageStatus=delivered");
    // Just received: wait for the sender, first in the broker's smallest tier (it has usually
    // outrun the sender's commit by milliseconds), then on the runtime's schedule.
    for attempt in 0..=EARLY_RECHECKS {
        match handler
            .handle(&incoming(body.as_bytes(), Utc::now(), attempt))
            .await
        {
            Outcome::Retry { reason, after } => {
                assert!(reason.starts_with("unknown_message"), "{reason}");
                let expected = (attempt < EARLY_RECHECKS).then_some(Duration::from_millis(250));
                assert_eq!(after, expected, "retry {attempt}");
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }
    // First seen longer ago than the window: parked with its reason.
    let long_ago = Utc::now() - chrono::Duration::minutes(11);
    match handler
        .handle(&incoming(body.as_bytes(), long_ago, 5))
        .await
    {
        Outcome::Reject { reason } => assert!(reason.starts_with("unknown_message"), "{reason}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    // Out of broker retries before the window ends: parked as unknown_message too.
    match handler
        .handle(&incoming(body.as_bytes(), Utc::now(), 12))
        .await
    {
        Outcome::Reject { reason } => assert!(reason.starts_with("unknown_message"), "{reason}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    // Still being dispatched by the sender (no provider id recorded yet): wait as well.
    let message = seed_message(
        &env.pool,
        "sms",
        "+14155550103",
        "sending",
        Some("twilio"),
        Some(sid),
    )
    .await;
    assert!(matches!(
        handler
            .handle(&incoming(body.as_bytes(), Utc::now(), 0))
            .await,
        Outcome::Retry { .. }
    ));
    sqlx::query("UPDATE comms.messages SET delivery_state = 'sent' WHERE id = $1")
        .bind(message.id)
        .execute(&env.pool)
        .await
        .expect("sent");
    assert_eq!(
        handler
            .handle(&incoming(body.as_bytes(), Utc::now(), 1))
            .await,
        Outcome::Ack
    );
    // A payload that is no callback at all is rejected as such.
    match handler
        .handle(&incoming(b"nothing=here", Utc::now(), 0))
        .await
    {
        Outcome::Reject { reason } => assert!(reason.starts_with("invalid_payload"), "{reason}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    env.teardown().await;
}

#[tokio::test]
async fn a_callback_before_the_message_row_exists_is_retried_then_matched() {
    let rig = StatusRig::start(&[]).await;
    let sid = "SMdddddddddddddddddddddddddddddd04";
    rig.twilio(&[("MessageSid", sid), ("MessageStatus", "delivered")])
        .await;
    // The callback waits in the delay tiers (250 ms twice, then the runtime's schedule):
    // handled, not dropped.
    let retried = eventually(WAIT, || async {
        for tier in RETRY_TIERS {
            if rig.env.depth(&rig.env.topology.retry_queue(*tier)).await >= 1 {
                return true;
            }
        }
        false
    })
    .await;
    assert!(retried, "the unknown callback was scheduled for a retry");
    // Now the sender commits the message.
    let message = seed_message(
        &rig.env.pool,
        "sms",
        "+14155550104",
        "sent",
        Some("twilio"),
        Some(sid),
    )
    .await;
    let matched = eventually(WAIT, || async {
        rig.state(message.id).await == "delivered"
    })
    .await;
    assert!(
        matched,
        "the retried callback was applied once the message existed"
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_callback_for_a_message_that_never_appears_is_parked_not_dropped() {
    let rig = StatusRig::start(&[("COMMS__STATUS__UNKNOWN_MESSAGE_RETRY_FOR", "1s")]).await;
    let sid = "SMeeeeeeeeeeeeeeeeeeeeeeeeeeeeee05";
    rig.twilio(&[("MessageSid", sid), ("MessageStatus", "delivered")])
        .await;
    let parked = eventually(WAIT, || async {
        let reasons: Vec<String> =
            sqlx::query_scalar("SELECT reason FROM internal.rejected_input WHERE queue = $1")
                .bind(rig.env.topology.status_queue().name)
                .fetch_all(&rig.env.pool)
                .await
                .expect("rejected");
        reasons
            .iter()
            .any(|r| r.starts_with("unknown_message") && r.contains(sid))
    })
    .await;
    assert!(
        parked,
        "the callback is kept in internal.rejected_input with its reason"
    );
    let dead = rig.env.topology.dead_queue();
    assert!(eventually(WAIT, || async { rig.env.depth(&dead).await >= 1 }).await);
    rig.stop().await;
}
