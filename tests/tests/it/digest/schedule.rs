//! The built-in schedule (`COMMS__DIGEST__SCHEDULE`) through the running worker, on a clock the
//! test moves: at an occurrence, each period that has closed and has no digest gets exactly one
//! `digest.report` job, an open period none; at the next occurrence, with digests built, none.

use std::collections::BTreeSet;
use std::time::Duration;

use comms_runtime::clock::ManualClock;
use comms_tests::{TestEnv, eventually};
use serde_json::Value;
use uuid::Uuid;

use super::reports::setup;
use super::{Worker, at};

const WAIT: Duration = Duration::from_secs(30);

/// A queue of the test's own that sees every `digest.report` job published to the exchange (the
/// worker consumes its own queue; this one only counts).
async fn watch_jobs(env: &TestEnv) -> String {
    let exchange = env.topology.digest_exchange();
    env.watch(
        &format!("{exchange}.schedule-watch"),
        &exchange,
        "digest.report",
    )
    .await
}

async fn period(env: &TestEnv, report: Uuid, starts: &str, ends: &str, state: &str) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO comms.report_periods (report_id, starts_on, ends_on, state)
         VALUES ($1, $2::date, $3::date, $4) RETURNING id",
    )
    .bind(report)
    .bind(starts)
    .bind(ends)
    .bind(state)
    .fetch_one(&env.pool)
    .await
    .expect("period")
}

/// The schedule's record of `occurrence`: how many jobs it enqueued, once it was handled.
async fn run_of(env: &TestEnv, occurrence: &str) -> Option<i32> {
    let handled = eventually(WAIT, || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT enqueued FROM comms.digest_schedule_runs WHERE occurrence = $1",
        )
        .bind(at(occurrence))
        .fetch_optional(&env.pool)
        .await
        .expect("runs")
        .is_some()
    })
    .await;
    if !handled {
        return None;
    }
    sqlx::query_scalar("SELECT enqueued FROM comms.digest_schedule_runs WHERE occurrence = $1")
        .bind(at(occurrence))
        .fetch_optional(&env.pool)
        .await
        .expect("runs")
}

#[tokio::test]
async fn each_closed_period_without_a_digest_gets_one_scheduled_job_and_a_second_tick_none() {
    let env = TestEnv::with(&[("COMMS__DIGEST__SCHEDULE", "0 6 * * *")]).await;
    let p = setup(&env).await; // March, closed
    let ended = period(&env, p.report, "2025-02-01", "2025-02-28", "open").await; // ended, not closed yet
    let open = period(&env, p.report, "2025-04-01", "2025-04-30", "open").await;
    let done = period(&env, p.report, "2025-01-01", "2025-01-31", "closed").await;
    sqlx::query(
        "INSERT INTO comms.digests (period_id, revision, client_id, owner, source, state, facts,
             content_hash, built_at)
         VALUES ($1, 1, $2, 'ana', 'reporting', 'published', '{}', repeat('a', 64), now())",
    )
    .bind(done)
    .bind(p.client)
    .execute(&env.pool)
    .await
    .expect("January already has its digest");
    let watched = watch_jobs(&env).await;

    let clock = ManualClock::new(at("2025-04-01T05:59:00Z"));
    let worker = Worker::start(&env, &clock);
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM comms.digest_schedule_runs")
            .fetch_one(&env.pool)
            .await
            .expect("runs"),
        0,
        "nothing before the first occurrence"
    );

    clock.set(at("2025-04-01T06:00:30Z"));
    assert_eq!(run_of(&env, "2025-04-01T06:00:00Z").await, Some(2));
    let jobs: Vec<Value> = env
        .drain(&watched)
        .await
        .into_iter()
        .map(|(body, _)| serde_json::from_slice(&body).expect("a JSON job"))
        .collect();
    let periods: BTreeSet<String> = jobs
        .iter()
        .map(|j| j["report_period_id"].as_str().expect("an id").to_string())
        .collect();
    assert_eq!(jobs.len(), 2, "exactly one job per period: {jobs:?}");
    assert_eq!(
        periods,
        [p.period, ended].iter().map(Uuid::to_string).collect(),
        "the closed and the ended period; not the open one ({open}) nor January ({done})"
    );
    assert!(
        jobs.iter()
            .all(|j| j["source"] == "schedule" && j["owner"] == "ana")
    );

    // The worker builds both; the next occurrence finds nothing left to enqueue.
    let built = eventually(WAIT, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(DISTINCT period_id) FROM comms.digests WHERE period_id = ANY($1)",
        )
        .bind(vec![p.period, ended])
        .fetch_one(&env.pool)
        .await
        .expect("digests")
            == 2
    })
    .await;
    assert!(built, "the scheduled jobs were built");
    clock.set(at("2025-04-02T06:00:30Z"));
    assert_eq!(run_of(&env, "2025-04-02T06:00:00Z").await, Some(0));
    assert!(
        env.drain(&watched).await.is_empty(),
        "the second tick enqueued nothing"
    );
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.digest_schedule_runs")
        .fetch_one(&env.pool)
        .await
        .expect("runs");
    assert_eq!(runs, 2, "one record per occurrence");
    worker.stop().await;
    env.teardown().await;
}
