//! Each benchmark scenario, measured the way docs/benchmarks.md describes.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use comms_domain::pause::Scope;
use comms_domain::pause::store::{self, PauseRequest};

use crate::load::Bench;
use crate::procs;
use crate::send_phase::{latency, start_senders, stop_senders, throughput, throughput_named};
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
