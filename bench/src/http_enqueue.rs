//! HTTP enqueue against the gateway's own ceiling (`BENCH_ONLY=http`): keep-alive clients on
//! loopback hammer `GET /healthz` (the cheapest answer the gateway gives: its ceiling on this
//! machine) and then `POST /v1/messages` for the same time with the same concurrency. Every 202 of
//! the enqueue API comes after the broker confirmed the publish; the bench checks that by counting
//! what reached the send queues (no sender runs, so nothing leaves them).

use std::time::{Duration, Instant};

use comms_domain::api_keys::{self, Role};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::load::{Bench, send_request};
use crate::procs::{self, Worker};
use crate::stats::percentile;

/// Clients sending at once, each on its own keep-alive connection.
pub const CONCURRENCY: usize = 64;

/// One phase: requests answered within the time, and how fast.
pub struct Phase {
    pub answered: usize,
    /// Answers with the status the phase expects (200 for `/healthz`, 202 for enqueue).
    pub ok: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub struct HttpRun {
    pub healthz: Phase,
    pub enqueue: Phase,
    /// Send requests found in the send queues after the enqueue phase.
    pub queued: u32,
    pub rss: String,
}

/// `CONCURRENCY` clients, each sending `request(i)` one after another until `seconds` pass.
async fn hammer<F>(seconds: u64, expect: u16, request: F) -> Phase
where
    F: Fn(usize) -> reqwest::RequestBuilder + Clone + Send + 'static,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CONCURRENCY {
        let request = request.clone();
        clients.spawn(async move {
            let mut seen: Vec<(f64, bool)> = Vec::new();
            let mut n = client;
            while Instant::now() < deadline {
                let at = Instant::now();
                let answer = request(n).send().await;
                let ok = match answer {
                    Ok(answer) => {
                        let ok = answer.status().as_u16() == expect;
                        // Read the body so the connection is kept for the next request.
                        let _ = answer.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                seen.push((at.elapsed().as_secs_f64() * 1000.0, ok));
                n += CONCURRENCY;
            }
            seen
        });
    }
    let mut latencies = Vec::new();
    let mut ok = 0;
    while let Some(Ok(seen)) = clients.join_next().await {
        ok += seen.iter().filter(|(_, good)| *good).count();
        latencies.extend(seen.into_iter().map(|(ms, _)| ms));
    }
    let elapsed = started.elapsed().as_secs_f64();
    Phase {
        answered: latencies.len(),
        ok,
        per_second: latencies.len() as f64 / elapsed,
        p50_ms: percentile(&mut latencies, 0.5),
        p99_ms: percentile(&mut latencies, 0.99),
    }
}

/// Messages waiting in the three send queues.
async fn queued(bench: &Bench) -> anyhow::Result<u32> {
    let channel = bench.connection.create_channel().await?;
    let mut total = 0;
    for name in ["sms", "email", "portal"] {
        let queue = bench.topology.send_queue(name);
        let declared = channel
            .queue_declare(
                queue.name.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        total += declared.message_count();
    }
    Ok(total)
}

pub async fn enqueue(bench: &Bench, seconds: u64) -> anyhow::Result<HttpRun> {
    let key = api_keys::create(&bench.pool, "bench-http", Role::Enqueue)
        .await?
        .key;
    let (port, health) = (procs::free_port()?, procs::free_port()?);
    let public = format!("http://127.0.0.1:{port}");
    let mut env = bench.sender_env(health);
    env.push(("COMMS__GATEWAY__LISTEN".into(), format!("127.0.0.1:{port}")));
    env.push(("COMMS__GATEWAY__PUBLIC_URL".into(), public.clone()));
    let gateway = Worker::start("gateway", "comms-gateway", &[], &env)?;
    let measured = async {
        procs::wait_http(&format!("{public}/healthz"), Duration::from_secs(30)).await?;
        let before = queued(bench).await?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()?;
        let (client, url) = (http.clone(), format!("{public}/healthz"));
        let healthz = hammer(seconds, 200, move |_| client.get(&url)).await;
        let (client, url) = (http.clone(), format!("{public}/v1/messages"));
        let client_id = bench.client_id;
        let bearer = format!("Bearer {key}");
        let enqueue = hammer(seconds, 202, move |i| {
            client
                .post(&url)
                .header("authorization", &bearer)
                .header("content-type", "application/json")
                .body(send_request(client_id, &format!("http-{i:09}"), i, 0).1)
        })
        .await;
        let after = queued(bench).await?;
        anyhow::Ok((healthz, enqueue, after - before))
    }
    .await;
    let rss = format!("gateway {:.0}", gateway.peak_rss_mib().unwrap_or(f64::NAN));
    gateway.stop().await;
    let (healthz, enqueue, queued) = measured?;
    Ok(HttpRun {
        healthz,
        enqueue,
        queued,
        rss,
    })
}

/// Prints the HTTP enqueue run against the gateway's ceiling, and fails it when an accepted
/// request did not reach the send queues.
pub fn report(run: &HttpRun) -> anyhow::Result<()> {
    let (ceiling, enqueue) = (&run.healthz, &run.enqueue);
    println!(
        "HTTP on loopback, {} keep-alive clients, {}:",
        CONCURRENCY, run.rss
    );
    println!("| request | answered | as expected | requests/s | vs /healthz | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, phase) in [
        ("GET /healthz (the ceiling)", ceiling),
        ("POST /v1/messages", enqueue),
    ] {
        println!(
            "| {name} | {} | {} | {:.0} | {:.1}% | {:.1} | {:.1} |",
            phase.answered,
            phase.ok,
            phase.per_second,
            100.0 * phase.per_second / ceiling.per_second.max(f64::MIN_POSITIVE),
            phase.p50_ms,
            phase.p99_ms
        );
    }
    println!(
        "send requests in the send queues after the run: {} (202 answers: {})",
        run.queued, enqueue.ok
    );
    anyhow::ensure!(
        run.queued as usize == enqueue.ok,
        "{} requests were accepted but {} reached the send queues",
        enqueue.ok,
        run.queued
    );
    Ok(())
}
