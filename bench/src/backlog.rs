//! `BENCH_ONLY=backlog`: a sender started against a large backlog (`BENCH_BACKLOG`, 1 000 000
//! requests published while no sender runs) keeps its memory bounded and drains at its normal
//! rate.
//!
//! The normal rate is one sender draining `BENCH_MESSAGES` requests in the same run. The backlog
//! is published in chunks (with confirms), then one sender drains it; its peak RSS (VmHWM) and
//! the drain rate (the backlog over the time from its first to its last `sent`) are reported.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::load::Bench;
use crate::stats::Row;

/// What one backlog run measured.
pub struct Backlog {
    pub messages: usize,
    pub normal_rate: f64,
    pub drain_rate: f64,
    pub peak_rss_mib: f64,
}

const CHUNK: usize = 20_000;

pub async fn measure(bench: &Bench, normal: usize, backlog: usize) -> anyhow::Result<Backlog> {
    let (normal_rate, _) =
        crate::send_phase::throughput_named(bench, "bl-live-", normal, 1).await?;
    println!("normal send, 1 sender, {normal} msgs: {normal_rate:.0} msg/s");
    let since = bench.db_now().await?;
    let started = std::time::Instant::now();
    for first in (0..backlog).step_by(CHUNK) {
        let requests: Vec<_> = (first..(first + CHUNK).min(backlog))
            .map(|i| bench.request(&format!("bl-{i:08}"), i, 0))
            .collect();
        bench.publish_bulk(&requests).await?;
    }
    println!(
        "backlog: {backlog} requests published in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let mut senders = crate::send_phase::start_senders(bench, 1)?;
    let drained = wait_drained(bench, since, backlog).await;
    let peak_rss_mib = senders[0].0.peak_rss_mib().unwrap_or(f64::NAN);
    crate::send_phase::stop_senders(std::mem::take(&mut senders)).await;
    drained?;
    let (first, last): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "SELECT min(dispatched_at), max(dispatched_at) FROM comms.messages
         WHERE delivery_state = 'sent' AND created_at >= $1 AND idempotency_key LIKE 'bl-0%'",
    )
    .bind(since)
    .fetch_one(&bench.pool)
    .await?;
    let seconds = (last - first).num_milliseconds().max(1) as f64 / 1000.0;
    Ok(Backlog {
        messages: backlog,
        normal_rate,
        drain_rate: backlog as f64 / seconds,
        peak_rss_mib,
    })
}

/// Waits (up to an hour) until the send queues are empty, watching the broker's queue depth (a
/// count over a table growing to a million rows would cost the database what the drain is being
/// measured on), then until the last messages the sender held are recorded `sent`.
async fn wait_drained(bench: &Bench, since: DateTime<Utc>, backlog: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        let waiting = bench.queued_sends().await?;
        if waiting == 0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{waiting} backlog requests were still queued after an hour"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    bench
        .wait_sent("bl-0", since, backlog, left.max(Duration::from_secs(60)))
        .await
}

pub fn row(run: &Backlog) -> Row {
    Row {
        scenario: format!(
            "drain a backlog of {} requests, 1 sender (vs its normal rate in the same run)",
            run.messages
        ),
        throughput: Some(run.drain_rate),
        unit: "msg/s",
        ratio: Some(run.drain_rate / run.normal_rate),
        p50_ms: None,
        p99_ms: None,
        rss: format!("sender {:.0}", run.peak_rss_mib),
    }
}
