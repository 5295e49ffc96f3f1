//! Notification batching (issue 15): N `digest.batch` events for K keys (N / K per key, which is
//! each bucket's `max_events`, interleaved across keys) published with confirms to a release
//! `comms-digest` process, until every bucket is flushed. Events per second from the first publish
//! to the last bucket flushed, and the flush latency of each bucket: flushed − its last event
//! collected (the moment it became due), both by the worker's clock in PostgreSQL.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lapin::options::QueuePurgeOptions;
use serde_json::json;
use uuid::Uuid;

use crate::Knobs;
use crate::load::Bench;
use crate::procs::{self, Worker};
use crate::stats::{Row, percentile};

/// What one batching run measured.
pub struct Batching {
    pub events_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Send requests the flushes put on `comms.send` (one per key, exactly).
    pub flushed: u32,
    pub rss: String,
}

/// One `digest.batch` job: event `i` of the run, for the key of `contact`.
pub fn event(i: usize, contact: Uuid, max_events: usize, record: Uuid) -> Vec<u8> {
    json!({
        "event_id": format!("bench-{i:07}"),
        "contact_id": contact,
        "channel": "email",
        "topic": "orders",
        "window": { "look_back": "1h" },
        "max_events": max_events,
        "template": { "name": "mail" },
        "record": { "type": "client", "id": record },
        "owner": "bench",
        "source": "bench",
        "event": { "order": format!("A-{i}"), "total": "42.00" },
    })
    .to_string()
    .into_bytes()
}

pub async fn batching(bench: &Bench, events: usize, keys: usize) -> anyhow::Result<Batching> {
    anyhow::ensure!(
        keys > 0 && events >= keys,
        "need at least one event per key"
    );
    let per_key = events / keys;
    let events = per_key * keys;
    let contacts: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO comms.contacts (name) SELECT 'bench-' || g FROM generate_series(1, $1) g
         RETURNING id",
    )
    .bind(i64::try_from(keys)?)
    .fetch_all(&bench.pool)
    .await?;
    let send_queue = bench.topology.send_queue("email").name;
    let channel = bench.connection.create_channel().await?;
    channel
        .queue_purge(send_queue.as_str().into(), QueuePurgeOptions::default())
        .await?;

    let port = procs::free_port()?;
    let worker = Worker::start("digest", "comms-digest", &[], &bench.sender_env(port))?;
    procs::wait_http(
        &format!("http://127.0.0.1:{port}/readyz"),
        Duration::from_secs(30),
    )
    .await?;

    let jobs: Vec<(String, Vec<u8>)> = (0..events)
        .map(|i| {
            let body = event(i, contacts[i % keys], per_key, bench.client_id);
            ("digest.batch".to_string(), body)
        })
        .collect();
    let started_at = Utc::now();
    let started = Instant::now();
    bench
        .publish_to(&bench.topology.digest_exchange(), &jobs)
        .await?;
    let waited = wait_flushed(bench, keys, Duration::from_secs(900)).await;
    let rss = format!(
        "{} {:.0}",
        worker.name,
        worker.peak_rss_mib().unwrap_or(f64::NAN)
    );
    worker.stop().await;
    waited?;
    println!(
        "digest batching: all {keys} buckets flushed {:.1}s after the first publish",
        started.elapsed().as_secs_f64()
    );

    let (collected, last_flush): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM comms.digest_batch_events), max(flushed_at)
         FROM comms.digest_batches",
    )
    .fetch_one(&bench.pool)
    .await?;
    anyhow::ensure!(
        collected == i64::try_from(events)?,
        "{collected} of {events} events collected"
    );
    let seconds = last_flush
        .map(|at| (at - started_at).num_milliseconds().max(1) as f64 / 1000.0)
        .unwrap_or(f64::NAN);
    let mut latencies: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM b.flushed_at - max(e.received_at)) * 1000)::float8
         FROM comms.digest_batches b JOIN comms.digest_batch_events e ON e.batch_id = b.id
         GROUP BY b.id",
    )
    .fetch_all(&bench.pool)
    .await?;
    let flushed = bench_depth(&channel, &send_queue).await?;
    let _ = channel
        .queue_purge(send_queue.as_str().into(), QueuePurgeOptions::default())
        .await;
    let _ = channel.close(200, "done".into()).await;
    Ok(Batching {
        events_per_second: events as f64 / seconds,
        p50_ms: percentile(&mut latencies, 0.50),
        p99_ms: percentile(&mut latencies, 0.99),
        flushed,
        rss,
    })
}

/// Notification batching: events per second against the broker baseline, and flush latency.
pub async fn row(bench: &Bench, knobs: &Knobs, base: f64) -> anyhow::Result<Row> {
    let (events, keys) = (knobs.digest_events, knobs.digest_keys);
    let run = batching(bench, events, keys).await?;
    println!(
        "digest batching: {:.0} events/s ({:.2} of the baseline), flush latency p50 {:.1} ms, \
         p99 {:.1} ms, {} batches sent on",
        run.events_per_second,
        run.events_per_second / base,
        run.p50_ms,
        run.p99_ms,
        run.flushed
    );
    anyhow::ensure!(
        run.flushed as usize == keys,
        "{} send requests for {keys} keys: a batch was lost or doubled",
        run.flushed
    );
    Ok(Row {
        scenario: format!(
            "notification batching, {events} events for {keys} keys → {keys} batches flushed \
             (flush latency: last event → flushed)"
        ),
        throughput: Some(run.events_per_second),
        unit: "events/s",
        ratio: Some(run.events_per_second / base),
        p50_ms: Some(run.p50_ms),
        p99_ms: Some(run.p99_ms),
        rss: run.rss,
    })
}

/// Waits until `keys` buckets are flushed (or `limit` passes).
async fn wait_flushed(bench: &Bench, keys: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let flushed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM comms.digest_batches WHERE state = 'flushed'")
                .fetch_one(&bench.pool)
                .await?;
        if flushed as usize >= keys {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("only {flushed} of {keys} buckets flushed within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Messages ready in `queue` (the flushed batches' send requests).
async fn bench_depth(channel: &lapin::Channel, queue: &str) -> anyhow::Result<u32> {
    let declared = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?;
    Ok(declared.message_count())
}
