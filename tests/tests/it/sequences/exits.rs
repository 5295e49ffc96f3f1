//! Exits: a reply, an opt-out on the step's channel, a booked outcome and an owner's stop each end
//! the enrolment before its next step, with the reason on the enrolment and in the timeline.

use comms_runtime::amqp::Outgoing;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::eventually;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;

use super::{Seq, WAIT, at, key, three_steps};

/// An inbound SMS from `from`, as the gateway publishes a verified Twilio webhook.
async fn inbound_sms(seq: &Seq, sid: &str, from: &str, body: &str) {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("MessageSid", sid)
        .append_pair("From", from)
        .append_pair("To", "+15005550006")
        .append_pair("Body", body)
        .finish();
    let content_type = "application/x-www-form-urlencoded";
    let mut headers = FieldTable::default();
    headers.insert(
        "x-comms-content-type".into(),
        AMQPValue::LongString(content_type.into()),
    );
    let env = seq.env();
    env.publisher
        .publish(Outgoing {
            exchange: &env.topology.provider_exchange(),
            routing_key: "inbound.twilio",
            body: form.as_bytes(),
            headers,
            content_type: Some(content_type),
            ..Outgoing::default()
        })
        .await
        .expect("inbound published");
}

#[tokio::test]
async fn a_reply_an_opt_out_a_booked_outcome_and_a_stop_each_end_the_enrolment_before_the_next_step()
 {
    let seq = Seq::start("2026-11-27T15:00:00Z").await;
    seq.fleet
        .approved_template(
            "sms_opt_out_confirmation",
            "sms",
            None,
            "You are unsubscribed.",
        )
        .await;
    let runtime = Runtime::new(seq.env().settings.clone(), seq.env().pool.clone());
    let shutdown = Shutdown::new();
    let replies = tokio::spawn(comms_replies::run(runtime, shutdown.clone()));
    seq.active(&three_steps("winback")).await;
    let phones = [
        "+14155552671",
        "+14155552672",
        "+14155552673",
        "+14155552674",
        "+14155552675",
    ];
    let mut enrolments = Vec::new();
    for phone in phones {
        let contact = seq.lead(phone, Some("America/New_York")).await;
        seq.enrol(contact, "winback").await;
        let enrolment = seq.enrolment(contact, "winback").await;
        assert!(seq.fleet.reaches(&key(enrolment, 1), "sent").await);
        enrolments.push(enrolment);
    }
    let [replied, opted_out, booked, stopped, untouched] = enrolments[..] else {
        panic!("five enrolments");
    };

    inbound_sms(&seq, "SMreply1", phones[0], "Thanks, call me Tuesday").await;
    inbound_sms(&seq, "SMstop1", phones[1], "STOP").await;
    let outcome = json!({
        "outcome_id": "crm-booking-1", "type": "booked", "source": "crm",
        "booked": { "kind": "meeting" }, "attributed_to": { "message": key(booked, 1) }
    });
    let env = seq.env();
    env.publish(
        &env.topology.sequence_exchange(),
        "outcome.booked",
        outcome.to_string().as_bytes(),
    )
    .await;
    assert!(
        comms_domain::sequences::enrol::stop(
            &env.pool,
            stopped,
            "ana",
            "asked us by phone",
            at("2026-11-27T15:05:00Z")
        )
        .await
        .expect("stopped")
    );
    // The reply and the opt-out are recorded by the replies worker before the next step is due.
    assert!(eventually(WAIT, || async {
        seq.fleet.state(&key(replied, 1)).await.is_some()
            && sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM internal.inbound_messages WHERE classification IN ('reply', 'opt_out')",
            )
            .fetch_one(&env.pool)
            .await
            .expect("inbound")
                == 2
    })
    .await);
    assert!(
        eventually(WAIT, || async {
            seq.enrolment_state(booked).await.0 == "exited"
        })
        .await
    );

    seq.clock.set(at("2026-11-28T15:00:00Z"));
    let reached = seq.fleet.reaches(&key(untouched, 2), "sent").await;
    assert!(
        reached,
        "step 2: {:?} {:?} {:?}",
        seq.fleet.state(&key(untouched, 2)).await,
        seq.fleet.failure(&key(untouched, 2)).await,
        seq.enrolment_state(untouched).await
    );
    for (enrolment, reason) in [
        (replied, "reply"),
        (opted_out, "opted_out"),
        (booked, "booked"),
        (stopped, "stopped"),
    ] {
        assert!(
            eventually(WAIT, || async {
                seq.enrolment_state(enrolment).await == ("exited".into(), Some(reason.into()))
            })
            .await,
            "{reason}: {:?}",
            seq.enrolment_state(enrolment).await
        );
        assert_eq!(seq.published(enrolment).await, 1, "{reason}: no step 2");
        let timeline = seq.fleet.timeline(&key(enrolment, 1)).await;
        assert!(
            timeline.contains(&"sequence_exited".to_string()),
            "{reason}: {timeline:?}"
        );
        let why: Option<String> = sqlx::query_scalar(
            "SELECT e.reason FROM comms.message_events e JOIN comms.messages m ON m.id = e.message_id
             WHERE m.idempotency_key = $1 AND e.event_type = 'sequence_exited'",
        )
        .bind(key(enrolment, 1))
        .fetch_one(&env.pool)
        .await
        .expect("event");
        assert_eq!(why.as_deref(), Some(reason));
    }
    assert_eq!(seq.enrolment_state(untouched).await.0, "active");
    shutdown.cancel();
    let _ = replies.await;
    seq.stop().await;
}
