//! A burst of callbacks already queued when the status worker starts: the runtime hands them over
//! in delivery groups, and every callback is still applied once, with the states the per-event
//! rules give: a duplicate changes nothing, a late `sent` does not undo `delivered`, and `sent`
//! and `delivered` in one burst leave the message delivered with both on its timeline.

use comms_tests::{TestEnv, eventually};
use uuid::Uuid;

use super::{StatusRig, WAIT, publish_callback, seed_message};

/// Groups of up to 16 out of a queue the worker finds full.
const GROUPED: &[(&str, &str)] = &[
    ("COMMS__CONSUMER__GROUP_MAX", "16"),
    ("COMMS__CONSUMER__CONCURRENCY", "32"),
    ("COMMS__CONSUMER__PREFETCH", "64"),
];

/// Messages that each get one plain `delivered` callback.
const PLAIN: usize = 40;

async fn twilio(env: &TestEnv, sid: &str, status: &str) {
    let body = crate::gateway::form(&[("MessageSid", sid), ("MessageStatus", status)]);
    publish_callback(env, "twilio", body.as_bytes()).await;
}

async fn count(env: &TestEnv, sql: &str, ids: &[Uuid]) -> i64 {
    sqlx::query_scalar(sql)
        .bind(ids)
        .fetch_one(&env.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_queued_burst_is_applied_in_groups_once_each_and_in_order() {
    let env = TestEnv::with(GROUPED).await;
    let mut plain = Vec::new();
    for i in 0..PLAIN {
        let sid = format!("SMburst{i:026}");
        let phone = format!("+1415556{i:04}");
        let message =
            seed_message(&env.pool, "sms", &phone, "sent", Some("twilio"), Some(&sid)).await;
        plain.push((sid, message.id));
    }
    let late = "SMburstlate0000000000000000000000";
    let twice = "SMbursttwice00000000000000000000";
    let climbs = "SMburstclimbs0000000000000000000";
    let late_message = seed_message(
        &env.pool,
        "sms",
        "+14155557001",
        "sent",
        Some("twilio"),
        Some(late),
    )
    .await;
    let twice_message = seed_message(
        &env.pool,
        "sms",
        "+14155557002",
        "sent",
        Some("twilio"),
        Some(twice),
    )
    .await;
    // Retried by the sender and not yet confirmed sent: `sent` moves it, then `delivered`.
    let climbs_message = seed_message(
        &env.pool,
        "sms",
        "+14155557003",
        "retrying",
        Some("twilio"),
        Some(climbs),
    )
    .await;

    // The burst, queued before any worker runs; the special cases sit among the plain ones.
    for (i, (sid, _)) in plain.iter().enumerate() {
        twilio(&env, sid, "delivered").await;
        match i {
            5 => twilio(&env, late, "delivered").await,
            6 => twilio(&env, late, "sent").await,
            10 | 11 => twilio(&env, twice, "delivered").await,
            20 => twilio(&env, climbs, "sent").await,
            21 => twilio(&env, climbs, "delivered").await,
            _ => {}
        }
    }
    let queue = env.topology.status_queue().name;
    assert_eq!(
        env.depth(&queue).await,
        u32::try_from(PLAIN).expect("small") + 6
    );

    let rig = StatusRig::start_on(env);
    let mut ids: Vec<Uuid> = plain.iter().map(|(_, id)| *id).collect();
    ids.extend([late_message.id, twice_message.id, climbs_message.id]);
    // Every callback but the repeated one: PLAIN + late 2 + twice 1 + climbs 2.
    let expected = i64::try_from(PLAIN).expect("small") + 5;
    let all_applied = eventually(WAIT, || async {
        count(
            &rig.env,
            "SELECT count(*) FROM comms.delivery_callbacks WHERE message_id = ANY($1)",
            &ids,
        )
        .await
            >= expected
    })
    .await;
    assert!(all_applied, "every callback of the burst was applied");
    let drained = eventually(WAIT, || async { rig.env.depth(&queue).await == 0 }).await;
    assert!(drained, "every delivery was settled");

    for (_, id) in &plain {
        assert_eq!(rig.state(*id).await, "delivered");
        assert_eq!(rig.timeline(*id).await, ["delivered"]);
    }
    // Two groups may run at once, so a pair split between them may be applied in either order;
    // both orders end delivered (the order within one group is `groups.rs`'s subject).
    let mut late_timeline = rig.timeline(late_message.id).await;
    late_timeline.sort();
    assert_eq!(rig.state(late_message.id).await, "delivered");
    assert_eq!(late_timeline, ["delivered", "provider_status"]);
    assert_eq!(rig.state(twice_message.id).await, "delivered");
    assert_eq!(rig.callbacks(twice_message.id).await, 1);
    assert_eq!(rig.timeline(twice_message.id).await, ["delivered"]);
    assert_eq!(rig.state(climbs_message.id).await, "delivered");
    assert_eq!(rig.callbacks(climbs_message.id).await, 2);
    let climbs_timeline = rig.timeline(climbs_message.id).await;
    assert!(
        climbs_timeline == ["sent", "delivered"]
            || climbs_timeline == ["delivered", "provider_status"],
        "{climbs_timeline:?}"
    );

    // Each event once: one callback row, one timeline entry and one raw payload per applied event.
    let env = &rig.env;
    let events = "SELECT count(*) FROM comms.message_events WHERE message_id = ANY($1)";
    let payloads = "SELECT count(*) FROM internal.provider_payloads WHERE message_id = ANY($1)";
    assert_eq!(count(env, events, &ids).await, expected);
    assert_eq!(count(env, payloads, &ids).await, expected);
    // Grouped: a transaction's now() is one instant, so groups share an `applied_at`.
    let transactions = count(
        env,
        "SELECT count(DISTINCT applied_at) FROM comms.delivery_callbacks WHERE message_id = ANY($1)",
        &ids,
    )
    .await;
    assert!(
        transactions < expected,
        "{expected} callbacks in {transactions} transactions: the burst was applied in groups"
    );
    rig.stop().await;
}
