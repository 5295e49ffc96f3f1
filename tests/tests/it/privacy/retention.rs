//! The retention job removes exactly what has expired, in batches, records counts, and is
//! idempotent; message rows and the event log outlive it. Ages come from a controlled clock.

use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use comms_domain::privacy::retention;
use comms_runtime::clock::{Clock, ManualClock};
use comms_runtime::settings::RetentionSettings;
use comms_tests::TestEnv;
use sqlx::PgPool;
use uuid::Uuid;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("time")
}

/// A finished SMS recorded `age` before `now`, with content and one event.
async fn message(pool: &PgPool, key: &str, state: &str, recorded: DateTime<Utc>) -> Uuid {
    let contact: Uuid =
        sqlx::query_scalar("INSERT INTO comms.contacts (name) VALUES ('Dana') RETURNING id")
            .fetch_one(pool)
            .await
            .expect("contact");
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address,
             owner, source, trigger, record_type, record_id, template_name, body, request,
             delivery_state, created_at)
         VALUES ($1, 'sms', 'transactional', $2, '+14155552671', 'ana', 'crm', 'test', 'client',
             gen_random_uuid(), 'welcome', 'Hello Dana',
             '{\"recipient\": {\"phone\": \"+14155552671\"}, \"template\": {\"name\": \"welcome\", \"vars\": {\"name\": \"Dana\"}}}',
             $3, $4)
         RETURNING id",
    )
    .bind(key)
    .bind(contact)
    .bind(state)
    .bind(recorded)
    .fetch_one(pool)
    .await
    .expect("message");
    sqlx::query(
        "INSERT INTO comms.message_events (message_id, event_type, actor, source, reason, occurred_at)
         VALUES ($1, 'sent', 'test', 'test', 'accepted by twilio', $2)",
    )
    .bind(id)
    .bind(recorded)
    .execute(pool)
    .await
    .expect("event");
    id
}

async fn raw(pool: &PgPool, table: &str, received: DateTime<Utc>) {
    let sql = match table {
        "payload" => {
            "INSERT INTO internal.provider_payloads (provider, kind, payload, received_at)
             VALUES ('twilio', 'status', 'To=%2B14155552671', $1)"
        }
        "rejected" => {
            "INSERT INTO internal.rejected_input (queue, routing_key, reason, payload, received_at)
             VALUES ('comms.send.sms', 'send.sms', 'invalid_json', '{\"phone\":', $1)"
        }
        _ => {
            "INSERT INTO internal.inbound_messages (provider, channel, provider_message_id,
                 from_address, to_address, body, classification, received_at)
             VALUES ('twilio', 'sms', gen_random_uuid()::text, '+14155552671', '+15005550006',
                 'See you Tuesday', 'unmatched', $1)"
        }
    };
    sqlx::query(sql)
        .bind(received)
        .execute(pool)
        .await
        .expect("raw row");
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

#[tokio::test]
async fn retention_removes_exactly_what_expired_in_batches_and_records_counts() {
    let env = TestEnv::new().await;
    let pool = &env.pool;
    let clock = ManualClock::new(at("2026-06-01T12:00:00Z"));
    let now = clock.now();
    // Bodies are kept 90 days: five are older (one still waiting to be sent), two are younger.
    for i in 0..4 {
        message(
            pool,
            &format!("old-{i}"),
            "delivered",
            now - Duration::days(91 + i),
        )
        .await;
    }
    message(pool, "old-held", "held", now - Duration::days(120)).await;
    message(pool, "young-1", "delivered", now - Duration::days(89)).await;
    message(pool, "young-2", "failed", now - Duration::days(10)).await;
    // Raw payloads and rejected input are kept 30 days, inbound bodies 90.
    for days in [31, 45, 29] {
        raw(pool, "payload", now - Duration::days(days)).await;
        raw(pool, "rejected", now - Duration::days(days)).await;
    }
    for days in [100, 80] {
        raw(pool, "inbound", now - Duration::days(days)).await;
    }
    let events_before = count(pool, "SELECT count(*) FROM comms.message_events").await;
    let settings = RetentionSettings {
        batch_size: 3,
        ..RetentionSettings::default()
    };

    let dry = retention::run(pool, &settings, now, true, "test", None)
        .await
        .expect("dry run");
    assert_eq!(dry.counts["message_bodies"], 4);
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM comms.messages WHERE body IS NULL"
        )
        .await,
        0,
        "a dry run changes nothing"
    );

    let report = retention::run(pool, &settings, now, false, "test", None)
        .await
        .expect("run");
    assert_eq!(report.counts["message_bodies"], 4);
    assert_eq!(report.batches["message_bodies"], 2, "3 then 1");
    assert_eq!(report.counts["raw_payloads"], 2);
    assert_eq!(report.counts["rejected_input"], 2);
    assert_eq!(report.counts["inbound_bodies"], 1);
    assert_eq!(report.counts["delivery_callbacks"], 0);

    let emptied: Vec<String> = sqlx::query_scalar(
        "SELECT idempotency_key FROM comms.messages
         WHERE body IS NULL AND recipient_address = 'removed' AND content_removed_at IS NOT NULL
           AND NOT request::text LIKE '%14155552671%' AND NOT request::text LIKE '%Dana%'
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("emptied");
    assert_eq!(emptied, ["old-0", "old-1", "old-2", "old-3"]);
    let kept: Vec<String> = sqlx::query_scalar(
        "SELECT idempotency_key FROM comms.messages WHERE body = 'Hello Dana' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("kept");
    assert_eq!(kept, ["old-held", "young-1", "young-2"]);
    // The rows themselves and the event log outlive it, unchanged.
    assert_eq!(count(pool, "SELECT count(*) FROM comms.messages").await, 7);
    assert_eq!(
        count(pool, "SELECT count(*) FROM comms.messages WHERE owner = 'ana' AND source = 'crm' AND delivery_state IN ('delivered', 'failed', 'held')").await,
        7
    );
    assert_eq!(
        count(pool, "SELECT count(*) FROM comms.message_events").await,
        events_before
    );
    assert_eq!(
        count(pool, "SELECT count(*) FROM internal.provider_payloads").await,
        1
    );
    assert_eq!(
        count(pool, "SELECT count(*) FROM internal.rejected_input").await,
        1
    );
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM internal.inbound_messages WHERE body = ''"
        )
        .await,
        1
    );

    // Idempotent: a second run finds nothing more.
    let again = retention::run(pool, &settings, now, false, "test", None)
        .await
        .expect("again");
    assert!(again.counts.values().all(|n| *n == 0), "{:?}", again.counts);
    // A month later, what has aged past its retention goes too.
    clock.set(now + Duration::days(30));
    let later = retention::run(pool, &settings, clock.now(), false, "test", None)
        .await
        .expect("later");
    assert_eq!(
        later.counts["message_bodies"], 1,
        "young-1 is now 119 days old"
    );
    assert_eq!(later.counts["raw_payloads"], 1);

    // Every run is recorded, with counts and no content.
    let runs: Vec<(bool, serde_json::Value)> =
        sqlx::query_as("SELECT dry_run, counts FROM comms.retention_runs ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("runs");
    assert_eq!(runs.len(), 4);
    assert!(runs[0].0);
    assert_eq!(runs[1].1["message_bodies"], 4);
    assert!(!runs.iter().any(|(_, c)| c.to_string().contains("Dana")));
    let refused = sqlx::query("DELETE FROM comms.retention_runs")
        .execute(pool)
        .await
        .expect_err("the record is append-only");
    assert!(refused.to_string().contains("append-only"));
    env.teardown().await;
}

#[tokio::test]
async fn commsctl_retention_run_dry_run_counts_and_changes_nothing() {
    let env = TestEnv::with(&[("COMMS__RETENTION__BODIES_DAYS", "1")]).await;
    let pool = &env.pool;
    message(pool, "old", "delivered", Utc::now() - Duration::days(2)).await;
    let cli = commsctl::Cli::parse_from(["commsctl", "retention", "run", "--dry-run"]);
    commsctl::run_with(cli, &env.settings)
        .await
        .expect("dry run");
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM comms.messages WHERE body IS NULL"
        )
        .await,
        0
    );
    let cli = commsctl::Cli::parse_from(["commsctl", "retention", "run"]);
    commsctl::run_with(cli, &env.settings).await.expect("run");
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM comms.messages WHERE body IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(pool, "SELECT count(*) FROM comms.retention_runs").await,
        2
    );
    env.teardown().await;
}
