//! The database refusing, for a moment, to record what the provider said: the sender keeps the
//! answer and records it when the database takes it again, so every accepted message ends `sent`
//! with its provider id, once — not `dispatch_outcome_unknown` with a task for its owner
//! (docs/reliability.md#the-window-of-dispatch_outcome_unknown).

use super::{assert_sent_once_each, count, count_reaches, fleet_with, queue};

/// Makes the first `refusals` writes of `sent` in this test's own database fail with a
/// serialization failure (SQLSTATE 40001, an error a later try gets over). A sequence counts
/// them: it is not rolled back with the refused statement.
async fn refuse_the_first_sent_writes(fleet: &comms_tests::fleet::SendFleet, refusals: i64) {
    for statement in [
        "CREATE SEQUENCE comms.test_sent_writes".to_string(),
        format!(
            "CREATE FUNCTION comms.test_refuse_sent() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF nextval('comms.test_sent_writes') <= {refusals} THEN
                 RAISE EXCEPTION 'test: could not serialize access' USING ERRCODE = '40001';
               END IF;
               RETURN NEW;
             END $$"
        ),
        "CREATE TRIGGER test_refuse_sent BEFORE UPDATE ON comms.messages FOR EACH ROW
         WHEN (OLD.delivery_state = 'sending' AND NEW.delivery_state = 'sent')
         EXECUTE FUNCTION comms.test_refuse_sent()"
            .to_string(),
    ] {
        sqlx::query(&statement)
            .execute(&fleet.env.pool)
            .await
            .expect("refusal trigger");
    }
}

#[tokio::test]
async fn answers_the_database_refused_for_a_moment_are_recorded_as_sent_once_each() {
    const N: usize = 40;
    const REFUSALS: i64 = 8;
    let mut fleet = fleet_with(&[]).await;
    refuse_the_first_sent_writes(&fleet, REFUSALS).await;
    queue(&fleet, "kept", N).await;
    fleet.start_sender();

    let sent = count_reaches(
        &fleet,
        "SELECT count(*) FROM comms.messages WHERE idempotency_key LIKE 'kept-%' AND delivery_state = 'sent'",
        N,
    )
    .await;
    if !sent {
        let others: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT idempotency_key, delivery_state, failure_reason FROM comms.messages
             WHERE delivery_state <> 'sent'",
        )
        .fetch_all(&fleet.env.pool)
        .await
        .expect("the others");
        panic!("every accepted message is recorded sent; not so: {others:?}");
    }
    let writes: i64 = count(&fleet, "SELECT last_value FROM comms.test_sent_writes").await;
    assert!(
        writes > REFUSALS,
        "the database refused {REFUSALS} writes of `sent` before taking them ({writes} tried)"
    );

    assert_sent_once_each(&fleet, "kept", N).await;
    fleet.stop().await;
}

/// A claim whose commit was not confirmed (its connection cut right after the `COMMIT` reached
/// the server) is released by the process that knows it made no call: each message it holds goes
/// back to `retrying` with the attempt given back, the mark cleared and a `dispatch_released`
/// event; a message held by another claim is not touched.
#[tokio::test]
async fn a_claim_whose_commit_was_not_confirmed_is_released_and_nothing_else() {
    use comms_domain::messages::ledger::calls::release_uncalled;
    use uuid::Uuid;

    let mut fleet = fleet_with(&[]).await;
    queue(&fleet, "unconfirmed", 3).await;
    fleet.start_sender();
    let sent = count_reaches(
        &fleet,
        "SELECT count(*) FROM comms.messages WHERE delivery_state = 'sent'",
        3,
    )
    .await;
    assert!(sent, "the three are sent first");
    // As a claim leaves them (the sender, idle, has no delivery of them): two by the claim whose commit was not confirmed, one by another.
    let (unconfirmed, other) = (Uuid::new_v4(), Uuid::new_v4());
    for (key, claim) in [
        ("unconfirmed-0", unconfirmed),
        ("unconfirmed-1", unconfirmed),
        ("unconfirmed-2", other),
    ] {
        sqlx::query(
            "UPDATE comms.messages SET delivery_state = 'sending', dispatch_claim = $2,
                 call_started_at = now(), attempt_count = 2
             WHERE idempotency_key = $1",
        )
        .bind(key)
        .bind(claim)
        .execute(&fleet.env.pool)
        .await
        .expect("claimed");
    }

    let released = release_uncalled(&fleet.env.pool, unconfirmed, "comms-sender")
        .await
        .expect("release");
    assert_eq!(released, 2);
    let states: Vec<(String, String, i32, bool, bool)> = sqlx::query_as(
        "SELECT idempotency_key, delivery_state, attempt_count, dispatch_claim IS NULL,
                call_started_at IS NULL
         FROM comms.messages ORDER BY idempotency_key",
    )
    .fetch_all(&fleet.env.pool)
    .await
    .expect("states");
    assert_eq!(
        states,
        [
            ("unconfirmed-0".into(), "retrying".into(), 1, true, true),
            ("unconfirmed-1".into(), "retrying".into(), 1, true, true),
            ("unconfirmed-2".into(), "sending".into(), 2, false, false),
        ]
    );
    assert_eq!(
        fleet
            .timeline("unconfirmed-0")
            .await
            .last()
            .map(String::as_str),
        Some("dispatch_released")
    );
    assert_eq!(
        release_uncalled(&fleet.env.pool, unconfirmed, "comms-sender")
            .await
            .expect("again"),
        0,
        "released once"
    );
    fleet.stop().await;
}
