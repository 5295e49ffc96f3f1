//! The send phases every throughput and latency scenario builds on: sender processes started and
//! stopped, requests published while none runs, a phase's rate read from the database's
//! timestamps, a fixed offered load, and the sender's own stage times.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::Knobs;
use crate::load::Bench;
use crate::procs::{self, Worker};
use crate::stats::percentile;

pub(crate) fn start_senders(bench: &Bench, count: usize) -> anyhow::Result<Vec<(Worker, u16)>> {
    (0..count)
        .map(|i| {
            let port = procs::free_port()?;
            let worker = Worker::start(
                &format!("sender-{i}"),
                "comms-sender",
                &[],
                &bench.sender_env(port),
            )?;
            Ok((worker, port))
        })
        .collect()
}

pub(crate) async fn stop_senders(senders: Vec<(Worker, u16)>) -> String {
    let mut rss = Vec::new();
    for (worker, _) in senders {
        rss.push(format!(
            "{} {:.0}",
            worker.name,
            worker.peak_rss_mib().unwrap_or(f64::NAN)
        ));
        worker.stop().await;
    }
    rss.join(", ")
}

/// N requests pre-published, then `senders` processes drain them: messages per second from the
/// first dispatch to the last message recorded `sent` (with its events) in PostgreSQL.
pub(crate) async fn throughput(
    bench: &Bench,
    count: usize,
    senders: usize,
) -> anyhow::Result<(f64, String)> {
    throughput_named(bench, &format!("tp{senders}-"), count, senders).await
}

/// [`throughput`] with the idempotency keys under `prefix`, so runs of one bench never collide.
pub(crate) async fn throughput_named(
    bench: &Bench,
    prefix: &str,
    count: usize,
    senders: usize,
) -> anyhow::Result<(f64, String)> {
    let since = prepublish(bench, prefix, count).await?;
    let workers = start_senders(bench, senders)?;
    let waited = bench
        .wait_sent(prefix, since, count, Duration::from_secs(600))
        .await;
    let rss = stop_senders(workers).await;
    waited?;
    Ok((sent_rate(bench, prefix, since, count).await?, rss))
}

/// Publishes `count` send requests keyed `<prefix><n>` while no sender runs; returns the database
/// time before the first, from which the phase's messages are counted.
pub(crate) async fn prepublish(
    bench: &Bench,
    prefix: &str,
    count: usize,
) -> anyhow::Result<DateTime<Utc>> {
    let requests: Vec<_> = (0..count)
        .map(|i| bench.request(&format!("{prefix}{i:07}"), i, 0))
        .collect();
    let since = bench.db_now().await?;
    bench.publish_bulk(&requests).await?;
    Ok(since)
}

/// Messages per second from the first to the last `dispatched_at` of a phase's `count` messages.
pub(crate) async fn sent_rate(
    bench: &Bench,
    prefix: &str,
    since: DateTime<Utc>,
    count: usize,
) -> anyhow::Result<f64> {
    let (first, last): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "SELECT min(dispatched_at), max(dispatched_at) FROM comms.messages
         WHERE delivery_state = 'sent' AND created_at >= $2 AND idempotency_key LIKE $1",
    )
    .bind(format!("{prefix}%"))
    .bind(since)
    .fetch_one(&bench.pool)
    .await?;
    let seconds = (last - first).num_milliseconds().max(1) as f64 / 1000.0;
    Ok(count as f64 / seconds)
}

/// A fixed offered load; latency from publish to the message recorded `sent`.
pub(crate) async fn latency(
    bench: &Bench,
    knobs: &Knobs,
) -> anyhow::Result<(f64, f64, String, Vec<(String, f64)>)> {
    latency_named(bench, knobs, "lat-").await
}

/// [`latency`] with the idempotency keys under `prefix`.
pub(crate) async fn latency_named(
    bench: &Bench,
    knobs: &Knobs,
    prefix: &str,
) -> anyhow::Result<(f64, f64, String, Vec<(String, f64)>)> {
    let workers = start_senders(bench, 1)?;
    let health = workers[0].1;
    procs::wait_http(
        &format!("http://127.0.0.1:{health}/readyz"),
        Duration::from_secs(30),
    )
    .await?;
    // Warm-up, not measured: the same rate for LATENCY_WARM_UP_SECONDS under keys of their own,
    // so the figure is the sender's steady state rather than its first seconds (and whatever the
    // database still does after the throughput runs before it).
    let warm_up = format!("warm-{prefix}");
    offer(bench, knobs.rate, LATENCY_WARM_UP_SECONDS, &warm_up).await?;
    let since = bench.db_now().await?;
    let total = offer(bench, knobs.rate, knobs.rate_seconds, prefix).await?;
    let waited = bench
        .wait_sent(prefix, since, total, Duration::from_secs(300))
        .await;
    let stages = stage_means(health).await.unwrap_or_default();
    let rss = stop_senders(workers).await;
    waited?;
    let mut samples: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM dispatched_at) * 1000 - (request->'template'->'vars'->>'t')::float8)::float8
         FROM comms.messages
         WHERE delivery_state = 'sent' AND created_at >= $2 AND idempotency_key LIKE $1",
    )
    .bind(format!("{prefix}%"))
    .bind(since)
    .fetch_all(&bench.pool)
    .await?;
    let p50 = percentile(&mut samples, 0.50);
    let p99 = percentile(&mut samples, 0.99);
    Ok((p50, p99, rss, stages))
}

/// Seconds of traffic before the latency run's measured traffic.
const LATENCY_WARM_UP_SECONDS: usize = 3;

/// Publishes `rate` requests a second for `seconds` (a tick every 10 ms), keyed `<prefix><n>`,
/// each carrying its publish time; returns how many.
async fn offer(bench: &Bench, rate: usize, seconds: usize, prefix: &str) -> anyhow::Result<usize> {
    let total = rate * seconds;
    let per_tick = (rate / 100).max(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut i = 0;
    while i < total {
        ticker.tick().await;
        let now = Utc::now().timestamp_millis();
        let batch: Vec<_> = (i..(i + per_tick).min(total))
            .map(|n| bench.request(&format!("{prefix}{n:07}"), n, now))
            .collect();
        i += batch.len();
        bench.publish_bulk(&batch).await?;
    }
    Ok(total)
}

/// The entry of [`stage_means`] that is not a time: the mean messages decided together.
pub(crate) const GROUP_SIZE_STAGE: &str = "group size (messages)";

/// Mean seconds per sender stage, from the sender's own histogram.
pub(crate) async fn stage_means(port: u16) -> anyhow::Result<Vec<(String, f64)>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
    let mut stages = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("comms_sender_stage_seconds_sum"))
    {
        let stage = line
            .split("stage=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("?");
        let count_line = text.lines().find(|l| {
            l.starts_with("comms_sender_stage_seconds_count")
                && l.contains(&format!("stage=\"{stage}\""))
        });
        if let (Some(sum), Some(count)) = (value(line), count_line.and_then(value))
            && count > 0.0
        {
            stages.push((stage.to_string(), sum / count * 1000.0));
        }
    }
    let group_sum = text
        .lines()
        .find(|l| l.starts_with("comms_sender_group_size_sum"))
        .and_then(value);
    let group_count = text
        .lines()
        .find(|l| l.starts_with("comms_sender_group_size_count"))
        .and_then(value);
    if let (Some(sum), Some(count)) = (group_sum, group_count)
        && count > 0.0
    {
        // Not a time: the mean number of messages decided together (printed as is).
        stages.push((GROUP_SIZE_STAGE.into(), sum / count));
    }
    Ok(stages)
}
