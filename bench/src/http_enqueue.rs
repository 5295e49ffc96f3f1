//! HTTP enqueue against the gateway's own ceiling (`BENCH_ONLY=http`): keep-alive clients on
//! loopback hammer `GET /healthz` (the cheapest answer the gateway gives: its ceiling on this
//! machine) and then `POST /v1/messages` for the same time with the same concurrency. Every 202 of
//! the enqueue API comes after the broker confirmed the publish; the bench checks that by counting
//! what reached the send queues (no sender runs, so nothing leaves them). Between the two, the
//! broker's own ceiling for that work: the same concurrency of confirmed persistent publishes of
//! send requests, with no HTTP and no database.

use std::time::{Duration, Instant};

use comms_domain::api_keys::{self, Role};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};

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
    /// The broker alone: confirmed publishes of send requests at the same concurrency.
    pub broker: Phase,
    pub enqueue: Phase,
    /// Send requests found in the send queues after the enqueue phase.
    pub queued: u32,
    pub rss: String,
}

/// `CONCURRENCY` clients, each making call `call(i)` one after another until `seconds` pass; a
/// call answers whether it got what the phase expects.
async fn hammer<F, Fut>(seconds: u64, call: F) -> Phase
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CONCURRENCY {
        let call = call.clone();
        clients.spawn(async move {
            let mut seen: Vec<(f64, bool)> = Vec::new();
            let mut n = client;
            while Instant::now() < deadline {
                let at = Instant::now();
                let ok = call(n).await;
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

/// Sends `request` and answers whether its status is `expect` (reading the body, so the
/// connection is kept for the next request).
async fn answered_with(request: reqwest::RequestBuilder, expect: u16) -> bool {
    match request.send().await {
        Ok(answer) => {
            let ok = answer.status().as_u16() == expect;
            let _ = answer.bytes().await;
            ok
        }
        Err(_) => false,
    }
}

/// The broker's own ceiling for what an enqueue needs from it: `CONCURRENCY` publishers on one
/// confirm-mode channel (as the gateway has), each publishing a persistent send request to the
/// send exchange and waiting for its confirm before the next. Returns the phase and how many
/// the broker confirmed (they stay in the send queues).
async fn broker_ceiling(bench: &Bench, seconds: u64) -> anyhow::Result<Phase> {
    let channel = bench.connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let exchange = bench.topology.send_exchange();
    let client_id = bench.client_id;
    let phase = hammer(seconds, move |i| {
        let (channel, exchange) = (channel.clone(), exchange.clone());
        async move {
            let (routing_key, body) = send_request(client_id, &format!("brk-{i:09}"), i, 0);
            let published = channel
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await;
            match published {
                Ok(confirm) => confirm.await.is_ok_and(|confirmed| confirmed.is_ack()),
                Err(_) => false,
            }
        }
    })
    .await;
    Ok(phase)
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
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()?;
        let (client, url) = (http.clone(), format!("{public}/healthz"));
        let healthz = hammer(seconds, move |_| answered_with(client.get(&url), 200)).await;
        let broker = broker_ceiling(bench, seconds).await?;
        let before = bench.queued_sends().await?;
        let (client, url) = (http.clone(), format!("{public}/v1/messages"));
        let client_id = bench.client_id;
        let bearer = format!("Bearer {key}");
        let enqueue = hammer(seconds, move |i| {
            let request = client
                .post(&url)
                .header("authorization", &bearer)
                .header("content-type", "application/json")
                .body(send_request(client_id, &format!("http-{i:09}"), i, 0).1);
            answered_with(request, 202)
        })
        .await;
        let after = bench.queued_sends().await?;
        anyhow::Ok((healthz, broker, enqueue, after - before))
    }
    .await;
    let rss = format!("gateway {:.0}", gateway.peak_rss_mib().unwrap_or(f64::NAN));
    gateway.stop().await;
    let (healthz, broker, enqueue, queued) = measured?;
    Ok(HttpRun {
        healthz,
        broker,
        enqueue,
        queued,
        rss,
    })
}

/// Prints the HTTP enqueue run against the gateway's ceiling, and fails it when an accepted
/// request did not reach the send queues.
pub fn report(run: &HttpRun) -> anyhow::Result<()> {
    let (ceiling, broker, enqueue) = (&run.healthz, &run.broker, &run.enqueue);
    println!(
        "HTTP on loopback, {} keep-alive clients, {}:",
        CONCURRENCY, run.rss
    );
    println!(
        "| request | answered | as expected | per second | vs /healthz | vs the broker | p50 ms | p99 ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let share =
        |phase: &Phase, of: &Phase| 100.0 * phase.per_second / of.per_second.max(f64::MIN_POSITIVE);
    for (name, phase) in [
        ("GET /healthz (the gateway's ceiling)", ceiling),
        ("broker alone: publish + confirm (its ceiling)", broker),
        ("POST /v1/messages", enqueue),
    ] {
        println!(
            "| {name} | {} | {} | {:.0} | {:.1}% | {:.1}% | {:.1} | {:.1} |",
            phase.answered,
            phase.ok,
            phase.per_second,
            share(phase, ceiling),
            share(phase, broker),
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
