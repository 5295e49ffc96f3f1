//! Reconciliation against the real database, broker and sandbox: messages whose final callback
//! never came (the sandbox here sends none, as if the gateway had been down) are asked about at
//! the provider after `status.reconcile_after`, and move on through the normal status path.

use std::time::Duration;

use chrono::Utc;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_sandbox::{CallbackStatus, FaultSpec};
use comms_tests::eventually;
use comms_tests::fleet::{SendFleet, sms_request};
use serde_json::json;

use super::{WAIT, seed_message};

async fn task_count(fleet: &SendFleet, key: &str, title_part: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM comms.tasks t JOIN comms.messages m ON m.id = t.message_id
         WHERE m.idempotency_key = $1 AND t.state = 'open' AND t.title LIKE '%' || $2 || '%'",
    )
    .bind(key)
    .bind(title_part)
    .fetch_one(&fleet.env.pool)
    .await
    .expect("tasks")
}

#[tokio::test]
async fn messages_left_sent_are_reconciled_at_twilio_or_marked_unknown_for_sendgrid() {
    let fleet = SendFleet::start(&[("COMMS__STATUS__RECONCILE_AFTER", "2s")]).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}!")
        .await;
    fleet
        .approved_template("report", "email", Some("Report"), "Hello {{ name }}.")
        .await;
    fleet
        .sandbox()
        .add_fault(&FaultSpec {
            recipient: Some("+14155552672".into()),
            callback_status: Some(CallbackStatus::Undelivered),
            error_code: Some(30003),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    fleet
        .send(&sms_request(
            "rec-delivered",
            "+14155552671",
            fleet.client_id,
        ))
        .await;
    fleet
        .send(&sms_request(
            "rec-undelivered",
            "+14155552672",
            fleet.client_id,
        ))
        .await;
    fleet
        .send(&json!({
            "idempotency_key": "rec-email", "channel": "email", "kind": "transactional",
            "recipient": { "email": "dana@example.com" },
            "template": { "name": "report", "vars": { "name": "Dana" } },
            "record": { "type": "client", "id": fleet.client_id.to_string() },
            "owner": "ana", "source": "reporting", "trigger": "report.published"
        }))
        .await;
    for key in ["rec-delivered", "rec-undelivered", "rec-email"] {
        assert!(fleet.reaches(key, "sent").await, "{key} sent");
    }

    // No callback ever comes; the status worker asks once the messages are 2 s old.
    let shutdown = Shutdown::new();
    let runtime = Runtime::new(fleet.env.settings.clone(), fleet.env.pool.clone());
    let status = tokio::spawn(comms_status::run(runtime, shutdown.clone()));

    assert!(fleet.reaches("rec-delivered", "delivered").await);
    assert!(fleet.reaches("rec-undelivered", "undelivered").await);
    assert!(fleet.reaches("rec-email", "unknown_delivery").await);

    let (reason, _) = fleet.failure("rec-undelivered").await;
    assert!(
        reason.is_some_and(|r| r.contains("30003")),
        "the carrier's reason"
    );
    assert_eq!(
        fleet.timeline("rec-delivered").await,
        ["received", "dispatching", "sent", "delivered"]
    );
    let via: String = sqlx::query_scalar(
        "SELECT cb.via FROM comms.delivery_callbacks cb JOIN comms.messages m ON m.id = cb.message_id
         WHERE m.idempotency_key = 'rec-delivered'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("recorded status");
    assert_eq!(via, "reconciliation");
    assert_eq!(task_count(&fleet, "rec-email", "Delivery unknown").await, 1);
    assert_eq!(
        fleet.timeline("rec-email").await.last().map(String::as_str),
        Some("unknown_delivery")
    );

    // Nothing is asked twice for a final state, and the unknown one keeps its single task.
    let checks: i64 = sqlx::query_scalar("SELECT sum(checks) FROM comms.reconciliations")
        .fetch_one(&fleet.env.pool)
        .await
        .expect("checks");
    assert_eq!(checks, 3, "one check per message");

    shutdown.cancel();
    status
        .await
        .expect("status task")
        .expect("status stops cleanly");
    fleet.stop().await;
}

#[tokio::test]
async fn a_sid_twilio_does_not_know_is_unknown_and_a_young_message_is_left_alone() {
    let fleet = SendFleet::without_sender(&[]).await;
    let pool = &fleet.env.pool;
    let lost = seed_message(
        pool,
        "sms",
        "+14155550100",
        "sent",
        Some("twilio"),
        Some("SMdoesnotexist00000000000000000000"),
    )
    .await;
    let young = seed_message(
        pool,
        "sms",
        "+14155550101",
        "sent",
        Some("twilio"),
        Some("SMyoung"),
    )
    .await;
    sqlx::query(
        "UPDATE comms.messages SET dispatched_at = now() - interval '1 hour' WHERE id = $1",
    )
    .bind(lost.id)
    .execute(pool)
    .await
    .expect("age");
    let http = reqwest::Client::new();
    let providers = fleet.env.settings.providers.clone();
    let round_now = || async {
        comms_status::reconcile::reconcile(
            pool,
            &http,
            &providers,
            Duration::from_secs(600),
            Utc::now(),
        )
        .await
        .expect("round")
    };
    let round = round_now().await;
    assert_eq!((round.checked, round.moved, round.errors), (1, 1, 0));
    let states: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, delivery_state FROM comms.messages ORDER BY dispatched_at")
            .fetch_all(pool)
            .await
            .expect("states");
    assert!(states.contains(&(lost.id, "unknown_delivery".into())));
    assert!(states.contains(&(young.id, "sent".into())));
    // Asked again at once, nothing is due: the lost one is no longer `sent`, the young one is young.
    let again = round_now().await;
    assert_eq!(again.checked, 0);
    assert!(
        eventually(WAIT, || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM comms.tasks WHERE message_id = $1")
                .bind(lost.id)
                .fetch_one(pool)
                .await
                .unwrap_or(0)
                == 1
        })
        .await
    );
    fleet.stop().await;
}

/// A round must cost the same with ten thousand messages or ten million: the reconciler's claim
/// and the freshness watchdog read the index of the messages awaiting a status, never a walk of
/// every message by dispatch time (1.75 s and 3 GB per round at 10 million rows before 0029).
#[tokio::test]
async fn the_periodic_status_reads_use_the_index_of_messages_awaiting_a_status() {
    let env = comms_tests::TestEnv::new().await;
    let mut conn = comms_tests::planner_without_seqscan(&env.pool).await;
    let cutoff = Utc::now() - chrono::Duration::minutes(10);
    let reconciler: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN {}", comms_status::reconcile::DUE))
            .bind(cutoff)
            .bind(comms_status::reconcile::BATCH)
            .fetch_all(&mut *conn)
            .await
            .expect("reconciler plan");
    let watchdog: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN {}", comms_status::watchdog::STALE))
            .bind(cutoff)
            .fetch_all(&mut *conn)
            .await
            .expect("watchdog plan");
    for (reader, plan) in [("reconciler", reconciler), ("watchdog", watchdog)] {
        comms_tests::assert_plan_reads(
            reader,
            &plan,
            "messages_awaiting_status_idx",
            "messages_dispatched_idx",
        );
    }
    drop(conn);
    env.teardown().await;
}
