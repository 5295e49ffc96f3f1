//! One poisoned request among 31 valid ones, queued before the sender starts so that they are
//! decided in groups: the poisoned one is refused alone with its reason, the 31 are sent at
//! once, each with one attempt and no retry.

use comms_runtime::db_error::{DbFailure, classify};
use comms_tests::TestEnv;
use comms_tests::fleet::{SendFleet, sms_request};
use serde_json::{Value, json};

use super::{dead, rejected_reach, retries};
use crate::groups::{count, count_reaches, fleet_with, phone, queue};

const VALID: usize = 31;

/// The groups' fleet, with time limits well above what a loaded machine takes: the 32 requests
/// are decided at once on the test's one thread and its pool of ten connections (one by one,
/// after a group statement the database refused). With the usual 2 s provider timeout and 5 s
/// wait for a connection, a CPU saturated beside the test once left messages `sending` and
/// `received` past the 30 s wait, which is not what these tests are about.
async fn poison_fleet() -> SendFleet {
    fleet_with(&[
        ("COMMS__SENDER__PROVIDER_TIMEOUT", "15s"),
        ("COMMS__DATABASE__ACQUIRE_TIMEOUT", "30s"),
    ])
    .await
}

/// Queues 15 valid requests, `poisoned`, then 16 more; starts the sender; checks that the 31
/// are sent without a retry and returns the one rejection's reason.
async fn one_poisoned_among_valid(fleet: &mut SendFleet, poisoned: &Value) -> String {
    queue(fleet, "before", 15).await;
    fleet.send(poisoned).await;
    queue(fleet, "after", VALID - 15).await;
    fleet.start_sender();

    let sent =
        "SELECT count(*) FROM comms.messages WHERE delivery_state = 'sent' AND attempt_count = 1";
    if !count_reaches(fleet, sent, VALID).await {
        let others: Vec<(String, String, i32, Option<String>)> = sqlx::query_as(
            "SELECT m.idempotency_key, m.delivery_state, m.attempt_count,
                    string_agg(e.event_type || ': ' || coalesce(e.reason, ''), ' | ' ORDER BY e.id)
             FROM comms.messages m LEFT JOIN comms.message_events e ON e.message_id = m.id
             WHERE m.delivery_state <> 'sent' OR m.attempt_count <> 1
             GROUP BY 1, 2, 3",
        )
        .fetch_all(&fleet.env.pool)
        .await
        .expect("the messages that are not sent once");
        panic!("every valid request is sent on its first attempt; not so: {others:?}");
    }
    let rows = rejected_reach(&fleet.env, 1).await;
    assert_eq!(
        rows.len(),
        1,
        "only the poisoned request is rejected: {rows:?}"
    );
    let (reason, payload) = rows.into_iter().next().expect("one row");
    assert_eq!(
        payload,
        serde_json::to_vec(poisoned).expect("json"),
        "kept byte for byte"
    );
    let parked = dead(&fleet.env, 1).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].1, reason, "comms.dead carries the same reason");
    assert_eq!(retries(&fleet.env, "sms"), 0, "nothing was retried");
    let retry_events = count(
        fleet,
        "SELECT count(*) FROM comms.message_events WHERE event_type = 'retrying'",
    )
    .await;
    assert_eq!(retry_events, 0);
    assert_eq!(
        fleet.sandbox().messages().await.expect("sandbox").len(),
        VALID,
        "one provider call per valid request"
    );
    reason
}

/// Whether the 31 were recorded in groups (one statement gives its rows one `created_at`).
async fn grouped(fleet: &SendFleet) -> bool {
    count(
        fleet,
        "SELECT count(DISTINCT created_at) FROM comms.messages",
    )
    .await
        < VALID as i64
}

#[tokio::test]
async fn a_nul_in_a_template_variable_is_refused_alone() {
    let mut fleet = poison_fleet().await;
    let mut poisoned = sms_request("poisoned", &phone(3), fleet.client_id);
    poisoned["template"]["vars"]["name"] = json!("Da\u{0}na");
    let reason = one_poisoned_among_valid(&mut fleet, &poisoned).await;
    assert!(
        reason.starts_with("unstorable_character: template.vars.name: expected text without"),
        "{reason}"
    );
    assert!(
        grouped(&fleet).await,
        "the valid requests went out in groups"
    );
    assert_eq!(fleet.state("poisoned").await, None, "never recorded");
    fleet.stop().await;
}

#[tokio::test]
async fn a_nul_in_an_idempotency_key_is_refused_alone() {
    let mut fleet = poison_fleet().await;
    let poisoned = sms_request("poisoned\u{0}key", &phone(5), fleet.client_id);
    let reason = one_poisoned_among_valid(&mut fleet, &poisoned).await;
    assert!(
        reason.starts_with("unstorable_character: idempotency_key: "),
        "{reason}"
    );
    assert!(
        grouped(&fleet).await,
        "the valid requests went out in groups"
    );
    fleet.stop().await;
}

/// A request valid by the contract that the database still refuses for good (here a check
/// constraint this test adds): the group falls back to deciding its members one by one, so
/// only that one is rejected, with the database's reason, and no neighbour is retried.
#[tokio::test]
async fn a_request_the_database_refuses_is_rejected_alone_and_its_group_is_not_retried() {
    let mut fleet = poison_fleet().await;
    sqlx::query(
        "ALTER TABLE comms.messages ADD CONSTRAINT test_poison CHECK (owner <> 'poisoned-owner')",
    )
    .execute(&fleet.env.pool)
    .await
    .expect("constraint");
    let mut poisoned = sms_request("poisoned", &phone(3), fleet.client_id);
    poisoned["owner"] = json!("poisoned-owner");
    let reason = one_poisoned_among_valid(&mut fleet, &poisoned).await;
    assert_eq!(
        reason,
        "database_refused: SQLSTATE 23514 (check_violation); constraint test_poison"
    );
    fleet.stop().await;
}

/// The classification against the real server: what a NUL does to `text` and to `jsonb`.
#[tokio::test]
async fn the_database_refusing_a_character_is_permanent() {
    let env = TestEnv::new().await;
    let text = sqlx::query("SELECT $1::text")
        .bind("a\u{0}b")
        .execute(&env.pool)
        .await
        .expect_err("PostgreSQL refuses NUL in text");
    assert_eq!(classify(&text), DbFailure::Permanent, "{text}");
    let jsonb = sqlx::query("SELECT $1::text::jsonb")
        .bind(r#"{"a": "\u0000"}"#)
        .execute(&env.pool)
        .await
        .expect_err("PostgreSQL refuses \\u0000 in jsonb");
    assert_eq!(classify(&jsonb), DbFailure::Permanent, "{jsonb}");
    env.teardown().await;
}
