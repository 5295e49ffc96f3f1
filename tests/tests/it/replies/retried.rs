//! A reply that comes back from a retry delay tier — its first delivery met a database outage —
//! is read like on its first delivery: the tier's routing key (`1s.<queue>`) does not say where it
//! came from, the gateway's `x-comms-provider` header does. Found by `make chaos`: such replies
//! were parked as dead letters (`unknown inbound routing key 1s.chaos.comms.replies`).

use comms_runtime::amqp::Outgoing;
use comms_tests::eventually;
use lapin::types::{AMQPValue, FieldTable};

use super::{OUR_NUMBER, PHONE, Replies, WAIT, sent_sms};

#[tokio::test]
async fn a_reply_retried_through_a_delay_tier_is_recorded() {
    let r = Replies::start().await;
    sent_sms(&r, "retried-1").await;
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("MessageSid", "SMretried1")
        .append_pair("From", PHONE)
        .append_pair("To", OUR_NUMBER)
        .append_pair("Body", "Running late, sorry")
        .finish();
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("x-comms-content-type", "application/x-www-form-urlencoded"),
        ("x-comms-provider", "twilio"),
        ("x-comms-kind", "inbound"),
    ] {
        headers.insert(name.into(), AMQPValue::LongString(value.into()));
    }
    headers.insert("x-comms-retry".into(), AMQPValue::LongLongInt(1));
    let env = &r.fleet.env;
    let queue = env.topology.replies_queue().name;
    // What a delay tier's expiry hands back: the requeue exchange, the tier's routing key.
    env.publisher
        .publish(Outgoing {
            exchange: &env.topology.requeue_exchange(),
            routing_key: &format!("1s.{queue}"),
            body: form.as_bytes(),
            headers,
            ..Outgoing::default()
        })
        .await
        .expect("published");
    assert!(eventually(WAIT, || async { r.inbound_count("reply").await == 1 }).await);
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM internal.rejected_input")
        .fetch_one(&env.pool)
        .await
        .expect("rejected");
    assert_eq!(dead, 0, "nothing is parked");
    r.stop().await;
}
