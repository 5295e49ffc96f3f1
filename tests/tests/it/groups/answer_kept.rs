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
