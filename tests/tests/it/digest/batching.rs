//! Notification batching: flush by window end, by count, at a fixed daily time in the recipient's
//! zone; no event lost or doubled across a killed worker or two workers on one queue.

use std::collections::HashSet;
use std::time::Duration;

use comms_runtime::clock::ManualClock;
use comms_tests::{TestEnv, eventually};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Worker, at, contact, sends};

const FAST: &[(&str, &str)] = &[("COMMS__DIGEST__FLUSH_INTERVAL", "20ms")];
const WAIT: Duration = Duration::from_secs(20);

fn event(id: &str, contact: Uuid, topic: &str, window: Value, max: u32) -> Value {
    json!({
        "event_id": id,
        "contact_id": contact,
        "channel": "email",
        "topic": topic,
        "window": window,
        "max_events": max,
        "template": { "name": "new_leads" },
        "record": { "type": "client", "id": Uuid::nil() },
        "owner": "ana",
        "source": "crm",
        "event": { "lead": id },
    })
}

async fn publish(env: &TestEnv, body: &Value) {
    let exchange = env.topology.digest_exchange();
    let bytes = serde_json::to_vec(body).expect("json");
    env.publish(&exchange, "digest.batch", &bytes).await;
}

async fn collected(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM comms.digest_batch_events")
        .fetch_one(&env.pool)
        .await
        .expect("count")
}

async fn flushed(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM comms.digest_batches WHERE state = 'flushed'")
        .fetch_one(&env.pool)
        .await
        .expect("count")
}

fn leads(request: &Value) -> Vec<String> {
    request["template"]["vars"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["lead"].as_str().expect("lead").to_string())
        .collect()
}

#[tokio::test]
async fn a_bucket_flushes_once_when_its_window_ends() {
    let env = TestEnv::with(FAST).await;
    let clock = ManualClock::new(at("2025-03-01T10:05:00Z"));
    let worker = Worker::start(&env, &clock);
    let dana = contact(&env, None, None, false).await;
    for id in ["e1", "e2", "e3"] {
        publish(
            &env,
            &event(id, dana, "new-leads", json!({"every": "30m"}), 10),
        )
        .await;
    }
    assert!(eventually(WAIT, || async { collected(&env).await == 3 }).await);
    clock.set(at("2025-03-01T10:29:59Z"));
    // Before the window's end nothing goes out (the flusher runs every 20 ms meanwhile).
    assert!(
        !eventually(Duration::from_millis(300), || async {
            flushed(&env).await > 0
        })
        .await
    );
    clock.set(at("2025-03-01T10:30:00Z"));
    assert!(eventually(WAIT, || async { flushed(&env).await == 1 }).await);
    let out = sends(&env, "email").await;
    assert_eq!(out.len(), 1, "one message for the bucket: {out:?}");
    assert_eq!(leads(&out[0]), ["e1", "e2", "e3"]);
    assert!(
        out[0]["idempotency_key"]
            .as_str()
            .expect("key")
            .starts_with("batch:")
    );
    assert_eq!(out[0]["recipient"]["contact_id"], json!(dana));
    worker.stop().await;
    env.teardown().await;
}

#[tokio::test]
async fn a_bucket_flushes_at_its_maximum_count_before_the_window_ends() {
    let env = TestEnv::with(FAST).await;
    let clock = ManualClock::new(at("2025-03-01T10:05:00Z"));
    let worker = Worker::start(&env, &clock);
    let dana = contact(&env, None, None, false).await;
    for i in 0..5 {
        let id = format!("c{i}");
        publish(
            &env,
            &event(&id, dana, "new-leads", json!({"look_back": "1h"}), 2),
        )
        .await;
        // In order, so the buckets are predictable: wait for each to be collected.
        assert!(eventually(WAIT, || async { collected(&env).await == i + 1 }).await);
    }
    assert!(eventually(WAIT, || async { flushed(&env).await == 2 }).await);
    let out = sends(&env, "email").await;
    let mut got: Vec<Vec<String>> = out.iter().map(leads).collect();
    got.sort();
    assert_eq!(got, vec![vec!["c0", "c1"], vec!["c2", "c3"]]);
    // The fifth waits in an open bucket, for its own window or count.
    let open: i32 =
        sqlx::query_scalar("SELECT event_count FROM comms.digest_batches WHERE state = 'open'")
            .fetch_one(&env.pool)
            .await
            .expect("open bucket");
    assert_eq!(open, 1);
    worker.stop().await;
    env.teardown().await;
}

#[tokio::test]
async fn a_daily_time_flushes_at_that_time_in_the_recipients_zone() {
    let env = TestEnv::with(FAST).await;
    // 07:00 in New York (EDT).
    let clock = ManualClock::new(at("2025-06-02T11:00:00Z"));
    let worker = Worker::start(&env, &clock);
    let dana = contact(&env, None, Some("America/New_York"), false).await;
    publish(
        &env,
        &event("d1", dana, "daily", json!({"daily_at": "08:00"}), 50),
    )
    .await;
    assert!(eventually(WAIT, || async { collected(&env).await == 1 }).await);
    clock.set(at("2025-06-02T11:59:59Z"));
    assert!(
        !eventually(Duration::from_millis(300), || async {
            flushed(&env).await > 0
        })
        .await
    );
    // 08:00 New York is 12:00 UTC, not 08:00 UTC.
    clock.set(at("2025-06-02T12:00:00Z"));
    assert!(eventually(WAIT, || async { flushed(&env).await == 1 }).await);
    assert_eq!(leads(&sends(&env, "email").await[0]), ["d1"]);
    worker.stop().await;
    env.teardown().await;
}

#[tokio::test]
async fn a_killed_worker_loses_and_doubles_nothing() {
    let env = TestEnv::with(FAST).await;
    let clock = ManualClock::new(at("2025-03-01T10:05:00Z"));
    let dana = contact(&env, None, None, false).await;
    let worker = Worker::start(&env, &clock);
    for id in ["k1", "k2", "k3"] {
        publish(&env, &event(id, dana, "t", json!({"every": "30m"}), 10)).await;
    }
    assert!(eventually(WAIT, || async { collected(&env).await == 3 }).await);
    worker.kill(); // between collecting and flushing
    // Redelivered after the kill (a replayed event) and a new one while it is down.
    publish(&env, &event("k2", dana, "t", json!({"every": "30m"}), 10)).await;
    publish(&env, &event("k4", dana, "t", json!({"every": "30m"}), 10)).await;
    clock.set(at("2025-03-01T10:30:00Z"));
    let worker = Worker::start(&env, &clock);
    // k4 arrives after the window's end, so it opens the next bucket.
    assert!(eventually(WAIT, || async { collected(&env).await == 4 }).await);
    assert!(eventually(WAIT, || async { flushed(&env).await == 1 }).await);
    let out = sends(&env, "email").await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(leads(&out[0]), ["k1", "k2", "k3"]);
    clock.set(at("2025-03-01T11:00:00Z"));
    assert!(eventually(WAIT, || async { flushed(&env).await == 2 }).await);
    let out = sends(&env, "email").await;
    assert_eq!(out.len(), 1);
    assert_eq!(leads(&out[0]), ["k4"]);
    worker.stop().await;
    env.teardown().await;
}

#[tokio::test]
async fn two_workers_on_one_queue_put_every_event_in_exactly_one_message() {
    let env = TestEnv::with(FAST).await;
    let clock = ManualClock::new(at("2025-03-01T10:05:00Z"));
    let first = Worker::start(&env, &clock);
    let second = Worker::start(&env, &clock);
    let (ana, bo) = (
        contact(&env, None, None, false).await,
        contact(&env, None, None, false).await,
    );
    // Keys that a joined string would confuse ("a:b" + "c" vs "a" + "b:c") stay apart.
    let keys = [(ana, "a:b"), (ana, "a"), (bo, "a:b"), (bo, "b:c")];
    let mut all = HashSet::new();
    for i in 0..60 {
        let (who, topic) = keys[i % keys.len()];
        let id = format!("{topic}|{who}|{i}");
        all.insert(id.clone());
        publish(&env, &event(&id, who, topic, json!({"every": "30m"}), 4)).await;
    }
    assert!(eventually(WAIT, || async { collected(&env).await == 60 }).await);
    clock.set(at("2025-03-01T10:30:00Z"));
    assert!(
        eventually(WAIT, || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM comms.digest_batches WHERE state <> 'flushed'",
            )
            .fetch_one(&env.pool)
            .await
            .expect("count")
                == 0
        })
        .await
    );
    let out = sends(&env, "email").await;
    let mut seen = HashSet::new();
    for request in &out {
        let events = leads(request);
        let first_key = events[0].split('|').take(2).collect::<Vec<_>>();
        for id in &events {
            let key = id.split('|').take(2).collect::<Vec<_>>();
            assert_eq!(key, first_key, "one message holds one key's events");
            assert!(seen.insert(id.clone()), "{id} was sent twice");
        }
    }
    assert_eq!(seen, all, "every event went out");
    let keys: HashSet<&str> = out
        .iter()
        .map(|r| r["idempotency_key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys.len(), out.len(), "one message per bucket");
    first.stop().await;
    second.stop().await;
    env.teardown().await;
}
