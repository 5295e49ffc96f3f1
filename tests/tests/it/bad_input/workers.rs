//! The status and replies workers classify database errors like the sender: a callback or a
//! reply the database refuses for good is parked with its reason at once, never retried.

use comms_runtime::amqp::Outgoing;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::TestEnv;
use lapin::types::{AMQPValue, FieldTable};

use super::rejected_reach;

async fn publish(env: &TestEnv, routing_key: &str, body: &[u8]) {
    // As the gateway forwards it: the content type it verified travels in a header.
    let form = "application/x-www-form-urlencoded";
    let mut headers = FieldTable::default();
    headers.insert(
        comms_gateway::CONTENT_TYPE_HEADER.into(),
        AMQPValue::LongString(form.into()),
    );
    env.publisher
        .publish(Outgoing {
            exchange: &env.topology.provider_exchange(),
            routing_key,
            body,
            headers,
            content_type: Some(form),
            ..Outgoing::default()
        })
        .await
        .expect("published");
}

fn retries(queue: &str) -> u64 {
    comms_runtime::metrics::consumer()
        .handled
        .with_label_values(&[queue, "retry"])
        .get()
}

#[tokio::test]
async fn a_callback_and_a_reply_the_database_refuses_are_parked_not_retried() {
    let env = TestEnv::new().await;
    let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
    let shutdown = Shutdown::new();
    let status = tokio::spawn(comms_status::run(runtime.clone(), shutdown.clone()));
    let replies = tokio::spawn(comms_replies::run(runtime, shutdown.clone()));

    // U+0000 (here %00) in a provider's field: PostgreSQL cannot store or even compare it.
    publish(
        &env,
        "status.twilio",
        b"MessageSid=SM%00bad&MessageStatus=delivered",
    )
    .await;
    publish(
        &env,
        "inbound.twilio",
        b"MessageSid=SM1&From=%2B14155552671&To=%2B15005550006&Body=hi%00there",
    )
    .await;

    let rows = rejected_reach(&env, 2).await;
    for (reason, _) in &rows {
        assert!(
            reason.starts_with("database_refused: SQLSTATE 22021"),
            "{reason}"
        );
    }
    assert_eq!(retries(&env.topology.status_queue().name), 0);
    assert_eq!(retries(&env.topology.replies_queue().name), 0);

    shutdown.cancel();
    status.await.expect("status task").expect("status stops");
    replies.await.expect("replies task").expect("replies stops");
    env.teardown().await;
}
