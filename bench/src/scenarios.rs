//! Each benchmark scenario, measured the way docs/benchmarks.md describes.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use comms_domain::pause::Scope;
use comms_domain::pause::store::{self, PauseRequest};

use crate::load::Bench;
use crate::procs::{self, Worker};
use crate::stats::{Row, percentile};
use crate::{Knobs, baseline};

pub async fn all(bench: &Bench, knobs: &Knobs) -> anyhow::Result<Vec<Row>> {
    if knobs.only.as_deref() == Some("status") {
        let (rate, p50, p99, rss) =
            crate::status::ingestion(bench, knobs.messages.min(20_000)).await?;
        println!(
            "status ingestion: {rate:.0} callbacks/s, p50 {p50:.1} ms, p99 {p99:.1} ms, {rss}"
        );
        return Ok(Vec::new());
    }
    if knobs.only.as_deref() == Some("scale") {
        crate::scale::lookups(bench, knobs.scale_messages).await?;
        return Ok(Vec::new());
    }
    if knobs.only.as_deref() == Some("size") {
        crate::size::costs(bench, knobs).await?;
        return Ok(Vec::new());
    }
    if knobs.only.as_deref() == Some("retention") {
        return Ok(vec![retention_row(bench, knobs).await?]);
    }
    if knobs.only.as_deref() == Some("webhooks") {
        return Ok(vec![webhook_row(bench, knobs).await?]);
    }
    if knobs.only.as_deref() == Some("http") {
        crate::http_enqueue::report(
            &crate::http_enqueue::enqueue(bench, knobs.rate_seconds as u64).await?,
        )?;
        return Ok(Vec::new());
    }
    if knobs.only.as_deref() == Some("release") {
        let run =
            crate::release::measure(bench, knobs.messages, knobs.held, knobs.release_recipients)
                .await?;
        println!(
            "release after resume: {} held messages sent in {:.1} s, {:.0} msg/s = {:.2} of live sending ({:.0} msg/s, the mean of {:.0} before the pause and {:.0} after the release)",
            run.held,
            run.seconds,
            run.release_rate,
            run.release_rate / run.live_rate,
            run.live_rate,
            run.live_before,
            run.live_after
        );
        return Ok(vec![crate::release::row(&run)]);
    }
    if knobs.only.as_deref() == Some("backlog") {
        let run = crate::backlog::measure(bench, knobs.messages, knobs.backlog).await?;
        println!(
            "backlog of {}: drained at {:.0} msg/s = {:.2} of the normal rate ({:.0} msg/s); sender peak RSS {:.1} MiB",
            run.messages,
            run.drain_rate,
            run.drain_rate / run.normal_rate,
            run.normal_rate,
            run.peak_rss_mib
        );
        return Ok(vec![crate::backlog::row(&run)]);
    }
    if knobs.only.as_deref() == Some("scaling") {
        let run = crate::scaling::measure(bench, knobs.messages, knobs.sender_cpu).await?;
        crate::scaling::report(&run);
        return Ok(crate::scaling::rows(&run));
    }
    if knobs.only.as_deref() == Some("loop") {
        crate::whole_loop::report(&crate::whole_loop::measure(bench, knobs.loop_seconds).await?);
        return Ok(Vec::new());
    }
    if knobs.only.as_deref() == Some("incidents") {
        return incident_rows(bench, knobs).await;
    }
    if knobs.only.as_deref() == Some("pause") {
        let (p50, p99, rss) = pause_propagation(bench, knobs.pauses).await?;
        println!("pause propagation: p50 {p50:.1} ms, p99 {p99:.1} ms");
        return Ok(vec![pause_row(knobs, p50, p99, rss)]);
    }
    if knobs.only.as_deref() == Some("digest") {
        let sample = crate::digest::event(0, uuid::Uuid::nil(), 10, bench.client_id);
        let base =
            baseline::run(&bench.connection, "bench.baseline", knobs.messages, &sample).await?;
        println!(
            "baseline: {base:.0} msg/s ({} bytes per message)",
            sample.len()
        );
        return Ok(vec![
            baseline_row(base, sample.len()),
            crate::digest::row(bench, knobs, base).await?,
        ]);
    }
    let sample = bench.request("sample-0000000", 1, 0).1;
    let base = baseline::run(&bench.connection, "bench.baseline", knobs.messages, &sample).await?;
    println!(
        "baseline: {base:.0} msg/s ({} bytes per message)",
        sample.len()
    );
    let mut rows = vec![baseline_row(base, sample.len())];
    // Not reported: the first drain on a fresh database pays for cold caches and the sender's
    // first statement preparations (a quarter to a third of the one-sender figure in 2026-12-01
    // runs), which is not the steady state the throughput figures are about.
    throughput_named(bench, "warm-tp-", (knobs.messages / 4).max(1), 1).await?;
    for senders in [1, 2] {
        let (rate, rss) = throughput(bench, knobs.messages, senders).await?;
        println!("send throughput, {senders} sender(s): {rate:.0} msg/s");
        rows.push(Row {
            scenario: format!(
                "send, {senders} sender process(es), {} msgs",
                knobs.messages
            ),
            throughput: Some(rate),
            unit: "msg/s",
            ratio: Some(rate / base),
            p50_ms: None,
            p99_ms: None,
            rss,
        });
    }
    let (p50, p99, rss, stages) = latency(bench, knobs).await?;
    println!(
        "enqueue-to-sent at {}/s: p50 {p50:.1} ms, p99 {p99:.1} ms",
        knobs.rate
    );
    rows.push(Row {
        scenario: format!("enqueue→sent at {}/s offered, 1 sender", knobs.rate),
        throughput: Some(knobs.rate as f64),
        unit: "msg/s offered",
        ratio: None,
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        rss,
    });
    if knobs.only.as_deref() == Some("send") {
        print_stages(&stages);
        return Ok(rows);
    }
    let (p50, p99, rss) = pause_propagation(bench, knobs.pauses).await?;
    println!("pause propagation: p50 {p50:.1} ms, p99 {p99:.1} ms");
    rows.push(pause_row(knobs, p50, p99, rss));
    let callbacks = knobs.messages.min(20_000);
    let (rate, p50, p99, rss) = crate::status::ingestion(bench, callbacks).await?;
    println!("status ingestion: {rate:.0} callbacks/s, p50 {p50:.1} ms, p99 {p99:.1} ms");
    rows.push(Row {
        scenario: format!(
            "status ingestion, {callbacks} signed Twilio callbacks → gateway → status"
        ),
        throughput: Some(rate),
        unit: "callbacks/s",
        ratio: Some(rate / base),
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        rss,
    });
    rows.push(crate::digest::row(bench, knobs, base).await?);
    print_stages(&stages);
    Ok(rows)
}

fn baseline_row(base: f64, bytes: usize) -> Row {
    Row {
        scenario: format!("broker baseline (publish+confirm → quorum → ack, {bytes} B)"),
        throughput: Some(base),
        unit: "msg/s",
        ratio: Some(1.0),
        p50_ms: None,
        p99_ms: None,
        rss: "-".into(),
    }
}

async fn webhook_row(bench: &Bench, knobs: &Knobs) -> anyhow::Result<Row> {
    let count = knobs.messages.min(20_000);
    let cost = crate::webhooks::slow_endpoint_cost(bench, count).await?;
    println!(
        "send with webhook traffic to a 2 s endpoint: {:.0} msg/s vs {:.0} msg/s without ({:.2}); \
         {:.0} events/s published, {} webhook calls",
        cost.with,
        cost.without,
        cost.with / cost.without,
        cost.events_per_second,
        cost.calls
    );
    Ok(Row {
        scenario: format!(
            "send, 1 sender, {count} msgs, with {:.0} events/s to a 2 s webhook (vs without)",
            cost.events_per_second
        ),
        throughput: Some(cost.with),
        unit: "msg/s",
        ratio: Some(cost.with / cost.without),
        p50_ms: None,
        p99_ms: None,
        rss: cost.rss,
    })
}

async fn retention_row(bench: &Bench, knobs: &Knobs) -> anyhow::Result<Row> {
    let count = knobs.messages.min(20_000);
    let cost = crate::retention_cost::measure(bench, count, knobs.retention_backlog).await?;
    println!(
        "send while the retention job works: {:.0} msg/s with vs {:.0} and {:.0} msg/s without \
         (before and after; {:.2} of their mean); the job emptied {} rows meanwhile ({:.0}/s)",
        cost.with,
        cost.without,
        cost.without_again,
        cost.with / ((cost.without + cost.without_again) / 2.0),
        cost.removed,
        cost.removed_per_second
    );
    Ok(Row {
        scenario: format!(
            "send, 1 sender, {count} msgs, with the retention job emptying {:.0} rows/s (vs without)",
            cost.removed_per_second
        ),
        throughput: Some(cost.with),
        unit: "msg/s",
        ratio: Some(cost.with / ((cost.without + cost.without_again) / 2.0)),
        p50_ms: None,
        p99_ms: None,
        rss: cost.rss,
    })
}

/// The incident fan-out prints its own table: its figures are times of one run, not rates of a
/// steady load, so they do not fit the main table's columns.
async fn incident_rows(bench: &Bench, knobs: &Knobs) -> anyhow::Result<Vec<Row>> {
    let run = crate::incidents::fan_out(bench, knobs.clients, knobs.recipients).await?;
    let rate = |seconds: f64| run.published as f64 / seconds.max(0.001);
    println!(
        "\nincident fan-out: {} contacts of {} clients, {} send requests published ({} skipped), \
         {} sender processes; peak RSS (MiB) {}\n",
        run.contacts,
        run.clients,
        run.published,
        run.skipped,
        crate::incidents::SENDERS,
        run.rss
    );
    println!("| from → to | seconds | notices/s |");
    println!("| --- | ---: | ---: |");
    for (what, seconds, per_second) in [
        (
            "incident.declared → proof awaiting approval",
            run.declared_to_proof,
            None,
        ),
        (
            "owner's approval (the bench, at once; left out below)",
            run.owner,
            None,
        ),
        (
            "approved → last send request published to comms.send",
            run.approved_to_published,
            None,
        ),
        ("approved → last notice `sent`", run.approved_to_sent, None),
        (
            "**declared → last send request published** (owner left out)",
            run.fan_out(),
            Some(rate(run.fan_out())),
        ),
        (
            "**declared → last `sent`** (owner left out, rate limits lifted)",
            run.to_sent(),
            Some(rate(run.to_sent())),
        ),
    ] {
        let per_second = per_second.map_or_else(|| "-".to_string(), |r: f64| format!("{r:.0}"));
        println!("| {what} | {seconds:.2} | {per_second} |");
    }
    Ok(Vec::new())
}

fn print_stages(stages: &[(String, f64)]) {
    println!("\nwhere the sender's time goes (mean per observation, ms):");
    for (stage, ms) in stages {
        println!("  {stage:<24} {ms:>7.2}");
    }
}

fn pause_row(knobs: &Knobs, p50: f64, p99: f64, rss: String) -> Row {
    Row {
        scenario: format!(
            "pause commit → last dispatch at the provider, 2 senders under load, {} pauses",
            knobs.pauses
        ),
        throughput: None,
        unit: "",
        ratio: None,
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        rss,
    }
}

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
async fn throughput(bench: &Bench, count: usize, senders: usize) -> anyhow::Result<(f64, String)> {
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
async fn latency(
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

/// Under load from two senders, the time from a global pause being committed to the last
/// dispatch recorded anywhere; over `pauses` pause/resume cycles.
async fn pause_propagation(bench: &Bench, pauses: usize) -> anyhow::Result<(f64, f64, String)> {
    let workers = start_senders(bench, 2)?;
    for (_, port) in &workers {
        procs::wait_http(
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_secs(30),
        )
        .await?;
    }
    let load = async {
        let mut n = 0usize;
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        let deadline = Instant::now()
            + Duration::from_millis(900) * u32::try_from(pauses).unwrap_or(20)
            + Duration::from_secs(2);
        while Instant::now() < deadline {
            ticker.tick().await;
            let batch: Vec<_> = (n..n + 4)
                .map(|i| bench.request(&format!("pp-{i:07}"), i, 0))
                .collect();
            n += batch.len();
            bench.publish_bulk(&batch).await?;
        }
        anyhow::Ok(())
    };
    let http = reqwest::Client::new();
    let measure = async {
        let mut lags = Vec::new();
        for _ in 0..pauses {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let request = PauseRequest {
                scope: Scope::Global,
                reason: "bench".into(),
                actor: "bench".into(),
                expires_at: None,
                automatic: false,
            };
            let _ = http
                .delete(format!("{}/sandbox/messages", bench.sandbox_url))
                .send()
                .await;
            store::pause(&bench.pool, &request).await?;
            let committed = Utc::now();
            tokio::time::sleep(Duration::from_millis(400)).await;
            // The last message the provider (the sandbox) received, by its own clock.
            let received: Vec<serde_json::Value> = http
                .get(format!("{}/sandbox/messages", bench.sandbox_url))
                .send()
                .await?
                .json()
                .await?;
            let last = received
                .iter()
                .filter_map(|m| m["received_at"].as_str()?.parse::<DateTime<Utc>>().ok())
                .max();
            let lag = last
                .map_or(0, |l| (l - committed).num_microseconds().unwrap_or(0))
                .max(0);
            lags.push(lag as f64 / 1000.0);
            store::resume(&bench.pool, &Scope::Global, "bench", "bench").await?;
        }
        anyhow::Ok(lags)
    };
    let (loaded, lags) = tokio::join!(load, measure);
    let rss = stop_senders(workers).await;
    loaded?;
    let mut lags = lags?;
    Ok((percentile(&mut lags, 0.5), percentile(&mut lags, 0.99), rss))
}
