//! Running: steps go out in order after their delays (controlled clock), wait for the morning in
//! the recipient's zone, are held by a `sequence:<name>` pause, and a killed scheduler neither
//! loses nor doubles a step.

use comms_domain::pause::Scope;
use comms_runtime::runtime::Runtime;
use comms_tests::eventually;

use super::{Seq, WAIT, at, key, three_steps};

const PHONE: &str = "+14155552671";

#[tokio::test]
async fn steps_go_out_in_order_after_their_delays() {
    let seq = Seq::start("2026-11-27T15:00:00Z").await; // 10:00 in New York
    seq.active(&three_steps("winback")).await;
    let dana = seq.lead(PHONE, Some("America/New_York")).await;
    seq.enrol(dana, "winback").await;
    let enrolment = seq.enrolment(dana, "winback").await;
    // Enrolling twice is a no-op.
    seq.enrol(dana, "winback").await;

    assert!(seq.fleet.reaches(&key(enrolment, 1), "sent").await);
    assert!(
        seq.stays_false(|| async { seq.published(enrolment).await > 1 })
            .await
    );
    seq.clock.set(at("2026-11-28T14:59:59Z"));
    assert!(
        seq.stays_false(|| async { seq.published(enrolment).await > 1 })
            .await
    );
    seq.clock.set(at("2026-11-28T15:00:00Z"));
    assert!(seq.fleet.reaches(&key(enrolment, 2), "sent").await);
    seq.clock.set(at("2026-11-28T16:59:00Z"));
    assert!(
        seq.stays_false(|| async { seq.published(enrolment).await > 2 })
            .await
    );
    seq.clock.set(at("2026-11-28T17:00:00Z"));
    assert!(seq.fleet.reaches(&key(enrolment, 3), "sent").await);

    let sent: Vec<(i32, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT step, published_at FROM comms.sequence_sends WHERE enrolment_id = $1 ORDER BY published_at, step",
    )
    .bind(enrolment)
    .fetch_all(&seq.env().pool)
    .await
    .expect("sends");
    assert_eq!(
        sent,
        vec![
            (1, at("2026-11-27T15:00:00Z")),
            (2, at("2026-11-28T15:00:00Z")),
            (3, at("2026-11-28T17:00:00Z"))
        ]
    );
    assert_eq!(seq.delivered_to(PHONE).await, 2, "two SMS steps, once each");
    assert_eq!(seq.enrolment_state(enrolment).await.0, "completed");
    let enrolments: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.sequence_enrolments")
        .fetch_one(&seq.env().pool)
        .await
        .expect("count");
    assert_eq!(enrolments, 1);
    seq.stop().await;
}

#[tokio::test]
async fn a_step_due_in_the_recipients_night_waits_for_the_morning() {
    let seq = Seq::start("2026-11-27T04:30:00Z").await; // 23:30 in New York
    seq.active(&three_steps("winback")).await;
    let dana = seq.lead(PHONE, Some("America/New_York")).await;
    seq.enrol(dana, "winback").await;
    let enrolment = seq.enrolment(dana, "winback").await;
    assert!(seq.fleet.reaches(&key(enrolment, 1), "deferred").await);
    let send_after: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT send_after FROM comms.messages WHERE idempotency_key = $1")
            .bind(key(enrolment, 1))
            .fetch_one(&seq.env().pool)
            .await
            .expect("send_after");
    assert_eq!(send_after, at("2026-11-27T13:00:00Z"), "08:00 in New York");
    assert_eq!(seq.delivered_to(PHONE).await, 0);
    seq.stop().await;
}

#[tokio::test]
async fn a_sequence_pause_holds_its_steps_and_only_its_steps() {
    let seq = Seq::start("2026-11-27T15:00:00Z").await;
    seq.active(&three_steps("winback")).await;
    let mut other = three_steps("welcome");
    other["steps"] =
        serde_json::json!([{ "channel": "sms", "template": "intro@1", "after": "0s" }]);
    seq.active(&other).await;
    seq.fleet
        .pause(Scope::Sequence("winback".into()), None)
        .await;
    let dana = seq.lead(PHONE, Some("America/New_York")).await;
    let eli = seq.lead("+14155552672", Some("America/New_York")).await;
    seq.enrol(dana, "winback").await;
    seq.enrol(eli, "welcome").await;
    let held = seq.enrolment(dana, "winback").await;
    let free = seq.enrolment(eli, "welcome").await;
    assert!(seq.fleet.reaches(&key(held, 1), "held").await);
    assert!(seq.fleet.reaches(&key(free, 1), "sent").await);
    seq.fleet.resume(Scope::Sequence("winback".into())).await;
    assert!(seq.fleet.reaches(&key(held, 1), "sent").await);
    assert_eq!(seq.delivered_to(PHONE).await, 1);
    seq.stop().await;
}

#[tokio::test]
async fn a_kill_during_scheduling_neither_loses_nor_doubles_a_step() {
    let mut seq = Seq::prepare("2026-11-27T15:00:00Z").await;
    seq.active(&three_steps("winback")).await;
    let dana = seq.lead(PHONE, Some("America/New_York")).await;
    let request = comms_domain::sequences::enrol::parse(
        serde_json::json!({
            "contact_id": dana, "sequence": "winback",
            "record": { "type": "client", "id": seq.fleet.client_id },
            "owner": "ana", "source": "crm"
        })
        .to_string()
        .as_bytes(),
    )
    .expect("valid");
    let enrolled = comms_domain::sequences::enrol::enrol(
        &seq.env().pool,
        &request,
        at("2026-11-27T15:00:00Z"),
    )
    .await
    .expect("enrolled");
    let enrolment = enrolled.enrolment_id;

    // The worst moment: the step is published and confirmed, the transaction that records it
    // and moves the enrolment on never commits (the process died).
    let runtime = Runtime::new(seq.env().settings.clone(), seq.env().pool.clone());
    let (_connection, publisher) = comms_sequences::scheduler::connect(&runtime)
        .await
        .expect("broker");
    let mut tx = seq.env().pool.begin().await.expect("tx");
    let done = comms_sequences::scheduler::claim_and_publish(
        &runtime,
        &publisher,
        &mut tx,
        at("2026-11-27T15:00:00Z"),
    )
    .await
    .expect("round");
    assert_eq!(done.steps, 1);
    drop(tx);
    assert_eq!(seq.published(enrolment).await, 0, "nothing was recorded");
    assert!(
        seq.fleet.reaches(&key(enrolment, 1), "sent").await,
        "the published step goes out"
    );

    // A scheduler starts again: the step is still due, goes out again with the same key, and the
    // sender records it once.
    seq.start_worker();
    assert!(eventually(WAIT, || async { seq.published(enrolment).await == 1 }).await);
    let next: (Option<i32>, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
        "SELECT next_step, next_due_at FROM comms.sequence_enrolments WHERE id = $1",
    )
    .bind(enrolment)
    .fetch_one(&seq.env().pool)
    .await
    .expect("enrolment");
    assert_eq!(next, (Some(2), Some(at("2026-11-28T15:00:00Z"))));
    let queue = seq.env().topology.send_queue("sms").name;
    assert!(eventually(WAIT, || async { seq.env().depth(&queue).await == 0 }).await);
    assert_eq!(seq.delivered_to(PHONE).await, 1, "one SMS, not two");

    // Killed outright (no drain) while it runs, then restarted: step 2 still goes out once.
    if let Some(worker) = seq.worker.take() {
        worker.kill();
    }
    seq.clock.set(at("2026-11-28T15:00:00Z"));
    seq.start_worker();
    assert!(seq.fleet.reaches(&key(enrolment, 2), "sent").await);
    assert!(eventually(WAIT, || async { seq.env().depth(&queue).await == 0 }).await);
    assert_eq!(seq.delivered_to(PHONE).await, 2);
    assert_eq!(seq.published(enrolment).await, 2);
    seq.stop().await;
}
