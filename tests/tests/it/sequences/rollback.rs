//! Rollback: everyone in flight has their remaining steps cancelled (a held step message too),
//! contacts who already got a step get the correction once, the escalation owner gets a task, the
//! result is recorded, and rolling back again changes nothing.

use comms_domain::pause::Scope;
use comms_domain::sequences::{rollback, store};
use comms_tests::eventually;

use super::{Seq, WAIT, at, key, three_steps};

#[tokio::test]
async fn a_rollback_cancels_in_flight_steps_and_sends_corrections_once() {
    let seq = Seq::start("2026-11-27T15:00:00Z").await;
    let version = seq.active(&three_steps("winback")).await;
    let phones = ["+14155552671", "+14155552672", "+14155552673"];
    let mut enrolments = Vec::new();
    for phone in &phones[..2] {
        let contact = seq.lead(phone, Some("America/New_York")).await;
        seq.enrol(contact, "winback").await;
        let enrolment = seq.enrolment(contact, "winback").await;
        assert!(seq.fleet.reaches(&key(enrolment, 1), "sent").await);
        enrolments.push(enrolment);
    }
    // A third contact's first step is held by the sequence's pause: in flight, not sent.
    seq.fleet
        .pause(Scope::Sequence("winback".into()), None)
        .await;
    let late = seq.lead(phones[2], Some("America/New_York")).await;
    seq.enrol(late, "winback").await;
    let held = seq.enrolment(late, "winback").await;
    assert!(seq.fleet.reaches(&key(held, 1), "held").await);

    let pool = &seq.env().pool;
    let now = at("2026-11-27T16:00:00Z");
    let done = rollback::rollback(
        pool,
        ("winback", version),
        "ana",
        "wrong offer in step 1",
        now,
    )
    .await
    .expect("rolled back");
    assert!(done.changed);
    assert_eq!(
        (
            done.cancelled,
            done.messages_cancelled,
            done.corrections_due
        ),
        (3, 1, 2)
    );
    assert_eq!(
        seq.fleet.state(&key(held, 1)).await.as_deref(),
        Some("cancelled")
    );

    // The corrections go out once each (a sequence pause does not hold a correction).
    for enrolment in &enrolments {
        assert!(seq.fleet.reaches(&key(*enrolment, 0), "sent").await);
    }
    let again = rollback::rollback(pool, ("winback", version), "ana", "again", now)
        .await
        .expect("idempotent");
    assert!(!again.changed);
    assert_eq!(again.cancelled, 3);
    seq.clock.set(at("2026-11-29T15:00:00Z"));
    assert!(
        seq.stays_false(|| async {
            let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.sequence_sends")
                .fetch_one(pool)
                .await
                .expect("sends");
            sent != 5
        })
        .await,
        "3 first steps and 2 corrections, nothing more"
    );
    for (i, phone) in phones.iter().enumerate() {
        let expected = if i < 2 { 2 } else { 0 };
        assert_eq!(seq.delivered_to(phone).await, expected, "{phone}");
    }
    let shown = store::show(pool, ("winback", version)).await.expect("show");
    assert_eq!(shown.sequence.state, "rolled_back");
    assert_eq!(shown.sequence.rollback_cancelled, Some(3));
    assert!(
        eventually(WAIT, || async {
            store::show(pool, ("winback", version))
                .await
                .expect("show")
                .sequence
                .corrections_sent
                == 2
        })
        .await
    );
    for enrolment in enrolments.iter().chain([&held]) {
        assert_eq!(
            seq.enrolment_state(*enrolment).await,
            ("cancelled".into(), Some("rolled_back".into()))
        );
    }
    let tasks: Vec<(String, String)> = sqlx::query_as(
        "SELECT owner, title FROM comms.tasks WHERE state = 'open' AND title LIKE 'Sequence%'",
    )
    .fetch_all(pool)
    .await
    .expect("tasks");
    assert_eq!(
        tasks,
        vec![(
            "ana".to_string(),
            format!("Sequence winback@{version} was rolled back")
        )]
    );
    // Resuming the pause releases nothing: the held step was cancelled.
    seq.fleet.resume(Scope::Sequence("winback".into())).await;
    assert!(
        seq.stays_false(|| async { seq.delivered_to(phones[2]).await > 0 })
            .await
    );
    seq.stop().await;
}
