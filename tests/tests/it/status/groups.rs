//! One delivery group through `StatusHandler::handle_group` against the same deliveries through
//! `handle`, one after the other, on two identical databases: the same outcomes and, message by
//! message, the same rows — states, reasons, consent, timeline entries, tasks, callbacks, raw
//! payloads. The group holds what makes ordering and dedupe matter: `sent` then `delivered` of one
//! message, `delivered` then a late `sent`, the same callback twice, an opt-out, an unknown
//! message, a message still `sending`, an invalid payload, and a SendGrid bounce matched by address
//! (which the group path leaves to the per-event path).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use comms_runtime::runtime::{Handler, Incoming, Outcome};
use comms_status::StatusHandler;
use comms_tests::TestEnv;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use uuid::Uuid;

use super::seed_message;

fn incoming(provider: &str, body: Vec<u8>, received_at: DateTime<Utc>) -> Incoming {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-comms-provider".into(),
        AMQPValue::LongString(provider.into()),
    );
    headers.insert(
        "x-comms-content-type".into(),
        AMQPValue::LongString(crate::status::content_type_of(provider).into()),
    );
    let at = received_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    headers.insert(
        "x-comms-received-at".into(),
        AMQPValue::LongString(at.as_str().into()),
    );
    Incoming {
        queue: "comms.status".into(),
        routing_key: format!("status.{provider}"),
        body,
        headers,
        message_id: None,
        redelivered: false,
        retry_attempt: 0,
    }
}

fn twilio(params: &[(&str, &str)], at: DateTime<Utc>) -> Incoming {
    incoming("twilio", crate::gateway::form(params).into_bytes(), at)
}

fn sendgrid(events: &serde_json::Value, at: DateTime<Utc>) -> Incoming {
    incoming("sendgrid", serde_json::to_vec(events).expect("json"), at)
}

/// The group, in delivery order.
fn deliveries() -> Vec<Incoming> {
    let at = Utc::now();
    let sg_f = "XMSGGROUPF.filter0001.16648.5515E0B88.0";
    vec![
        twilio(&[("MessageSid", "SMgroupb"), ("MessageStatus", "sent")], at),
        twilio(
            &[("MessageSid", "SMgroupa"), ("MessageStatus", "delivered")],
            at,
        ),
        twilio(
            &[("MessageSid", "SMgroupb"), ("MessageStatus", "delivered")],
            at,
        ),
        twilio(&[("MessageSid", "SMgroupa"), ("MessageStatus", "sent")], at),
        twilio(
            &[("MessageSid", "SMgroupc"), ("MessageStatus", "delivered")],
            at,
        ),
        twilio(
            &[("MessageSid", "SMgroupc"), ("MessageStatus", "delivered")],
            at,
        ),
        twilio(
            &[
                ("MessageSid", "SMgroupnone"),
                ("MessageStatus", "delivered"),
            ],
            at,
        ),
        incoming("twilio", b"nothing=here".to_vec(), at),
        twilio(
            &[
                ("MessageSid", "SMgroupd"),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "21610"),
            ],
            at,
        ),
        sendgrid(
            &json!([{ "event": "bounce", "email": "E@example.com", "type": "bounce",
                      "status": "5.1.1", "reason": "550 mailbox gone", "sg_event_id": "evt-e" }]),
            at,
        ),
        sendgrid(
            &json!([
                { "event": "delivered", "sg_message_id": sg_f, "sg_event_id": "evt-f1" },
                { "event": "open", "sg_message_id": sg_f, "sg_event_id": "evt-f2" },
                { "event": "open", "sg_message_id": sg_f, "sg_event_id": "evt-f2" },
            ]),
            at,
        ),
        twilio(
            &[("MessageSid", "SMgroupg"), ("MessageStatus", "delivered")],
            at,
        ),
    ]
}

/// A database with one message per case, named `a` to `g`.
struct World {
    env: TestEnv,
    handler: StatusHandler,
    messages: HashMap<&'static str, Uuid>,
}

async fn world() -> World {
    let env = TestEnv::new().await;
    let cases = [
        ("a", "sms", "+14155558001", "sent", "twilio", "SMgroupa"),
        ("b", "sms", "+14155558002", "retrying", "twilio", "SMgroupb"),
        ("c", "sms", "+14155558003", "sent", "twilio", "SMgroupc"),
        ("d", "sms", "+14155558004", "sent", "twilio", "SMgroupd"),
        (
            "e",
            "email",
            "e@example.com",
            "delivered",
            "sendgrid",
            "XMSGGROUPE",
        ),
        (
            "f",
            "email",
            "f@example.com",
            "sent",
            "sendgrid",
            "XMSGGROUPF",
        ),
        ("g", "sms", "+14155558007", "sending", "twilio", "SMgroupg"),
    ];
    let mut messages = HashMap::new();
    for (name, channel, address, state, provider, provider_id) in cases {
        let seeded = seed_message(
            &env.pool,
            channel,
            address,
            state,
            Some(provider),
            Some(provider_id),
        )
        .await;
        messages.insert(name, seeded.id);
    }
    let handler = StatusHandler {
        pool: env.pool.clone(),
        unknown_retry_for: Duration::from_secs(600),
        max_retries: 12,
    };
    World {
        env,
        handler,
        messages,
    }
}

type Row = (
    String,
    Option<String>,
    Option<String>,
    String,
    bool,
    Option<DateTime<Utc>>,
    String,
);
type Entry = (String, Option<String>, Option<String>, serde_json::Value);

/// Everything the status worker wrote about one message, in comparable form.
#[derive(Debug, PartialEq)]
struct Written {
    message: Row,
    timeline: Vec<Entry>,
    tasks: Vec<(String, String, Option<String>)>,
    callbacks: Vec<(String, String)>,
    payloads: i64,
}

async fn written(world: &World, name: &str) -> Written {
    let id = world.messages[name];
    let pool = &world.env.pool;
    let message: Row = sqlx::query_as(
        "SELECT m.delivery_state, m.failure_reason, m.next_action, m.opt_out_state,
                m.dispatched_at IS NOT NULL, m.delivered_at, c.consent_state
         FROM comms.messages m
         JOIN comms.contact_channels c ON c.contact_id = m.contact_id AND c.channel = m.channel
         WHERE m.id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("message");
    let timeline: Vec<Entry> = sqlx::query_as(
        "SELECT event_type, reason, recovery_rule, detail FROM comms.message_events
         WHERE message_id = $1 AND actor = 'comms-status' ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .expect("timeline");
    let tasks = sqlx::query_as(
        "SELECT title, next_action, reason FROM comms.tasks WHERE message_id = $1 ORDER BY created_at, title",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .expect("tasks");
    let callbacks = sqlx::query_as(
        "SELECT event_key, status FROM comms.delivery_callbacks WHERE message_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .expect("callbacks");
    let payloads =
        sqlx::query_scalar("SELECT count(*) FROM internal.provider_payloads WHERE message_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("payloads");
    Written {
        message,
        timeline,
        tasks,
        callbacks,
        payloads,
    }
}

fn is_retry(outcome: &Outcome, prefix: &str) -> bool {
    matches!(outcome, Outcome::Retry { reason, .. } if reason.starts_with(prefix))
}

#[tokio::test]
async fn a_group_writes_what_its_deliveries_one_by_one_would() {
    let group = deliveries();
    let grouped = world().await;
    let one_by_one = world().await;

    let outcomes = grouped.handler.handle_group(&group).await;
    let mut expected = Vec::new();
    for delivery in &group {
        expected.push(one_by_one.handler.handle(delivery).await);
    }
    assert_eq!(outcomes, expected);
    assert_eq!(outcomes.len(), group.len());
    for (index, outcome) in outcomes.iter().enumerate() {
        match index {
            6 | 11 => assert!(is_retry(outcome, "unknown_message"), "{index}: {outcome:?}"),
            7 => assert!(
                matches!(outcome, Outcome::Reject { reason } if reason.starts_with("invalid_payload: twilio")),
                "{outcome:?}"
            ),
            _ => assert_eq!(outcome, &Outcome::Ack, "{index}"),
        }
    }

    let names = ["a", "b", "c", "d", "e", "f", "g"];
    let mut before = Vec::new();
    for name in names {
        let got = written(&grouped, name).await;
        assert_eq!(got, written(&one_by_one, name).await, "message {name}");
        before.push(got);
    }
    let types = |w: &Written| -> Vec<String> { w.timeline.iter().map(|e| e.0.clone()).collect() };
    assert_eq!(types(&before[0]), ["delivered", "provider_status"]);
    assert_eq!(types(&before[1]), ["sent", "delivered"]);
    assert!(before[1].message.4, "b: the move to sent set dispatched_at");
    assert!(before[1].message.5.is_some(), "b: delivered_at set");
    assert_eq!(
        before[2].callbacks.len(),
        1,
        "c: the repeated callback once"
    );
    assert_eq!(types(&before[3]), ["undelivered", "opted_out"]);
    assert_eq!(before[3].message.6, "opted_out");
    assert_eq!(before[3].tasks.len(), 1);
    assert_eq!(types(&before[4]), ["provider_status", "suppressed"]);
    assert_eq!(types(&before[5]), ["delivered", "engagement"]);
    assert_eq!(
        before[6].callbacks.len(),
        0,
        "g: still sending, nothing applied"
    );

    // The group path wrote a, b, c and d in one transaction; one by one, a transaction each.
    let transactions = |world: &World| {
        let ids: Vec<Uuid> = ["a", "b", "c", "d"].map(|n| world.messages[n]).to_vec();
        let pool = world.env.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(DISTINCT applied_at) FROM comms.delivery_callbacks WHERE message_id = ANY($1)",
            )
            .bind(ids)
            .fetch_one(&pool)
            .await
            .expect("transactions")
        }
    };
    assert_eq!(transactions(&grouped).await, 1);
    assert_eq!(transactions(&one_by_one).await, 6);

    // The broker delivers the whole group again: every event is a duplicate, nothing changes.
    assert_eq!(grouped.handler.handle_group(&group).await, outcomes);
    for (name, was) in names.iter().zip(&before) {
        assert_eq!(
            &written(&grouped, name).await,
            was,
            "message {name} after redelivery"
        );
    }
    grouped.env.teardown().await;
    one_by_one.env.teardown().await;
}
