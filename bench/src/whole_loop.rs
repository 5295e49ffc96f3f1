//! `BENCH_ONLY=loop`: the whole loop an upstream app sees — `POST /v1/messages` → the sender →
//! the provider (the sandbox binary) → its signed status callbacks → the gateway → the status
//! worker → `delivered` — at rising offered rates, each held for `BENCH_LOOP_SECONDS` (60).
//!
//! Every process is a release binary of its own: the gateway, two senders, the status worker
//! (with its deployment's consumer settings, as in `BENCH_ONLY=status`) and a sandbox that posts
//! signed Twilio callbacks (`sent`, then `delivered`) to the gateway.
//! The requests are SMS (the sandbox signs SendGrid events with a key of its own, which the
//! gateway would have to be given). Latency per message is enqueue (the client's clock, carried
//! in the request) to the message recorded `delivered`, after 5 s of warm-up at the first rate
//! (not reported). The reported rate is the highest step whose p99 stayed under one second with
//! every accepted message delivered.

use std::time::{Duration, Instant};

use chrono::Utc;
use comms_domain::api_keys::{self, Role};

use crate::load::{Bench, send_request};
use crate::procs::{self, Worker};
use crate::stats::percentile;
use crate::status::STATUS_CONSUMER;

/// Offered rates tried, in order, until one misses the target.
const STEPS: &[usize] = &[100, 200, 400, 700, 1000, 1500, 2000, 3000];

/// One step's outcome.
pub struct Step {
    pub offered: usize,
    pub accepted: usize,
    pub delivered: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Step {
    pub fn met(&self) -> bool {
        self.accepted > 0 && self.delivered == self.accepted && self.p99_ms < 1000.0
    }
}

pub struct LoopRun {
    pub steps: Vec<Step>,
    pub rss: String,
}

pub async fn measure(bench: &Bench, seconds: u64) -> anyhow::Result<LoopRun> {
    let key = api_keys::create(&bench.pool, "bench-loop", Role::Enqueue)
        .await?
        .key;
    let (gateway_port, sandbox_port) = (procs::free_port()?, procs::free_port()?);
    let public = format!("http://127.0.0.1:{gateway_port}");
    let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
    let env = |health: u16| {
        let mut env = bench.sender_env(health);
        env.retain(|(k, _)| !k.starts_with("COMMS__PROVIDERS__TWILIO__BASE_URL"));
        env.push((
            "COMMS__PROVIDERS__TWILIO__BASE_URL".into(),
            sandbox_url.clone(),
        ));
        env.push((
            "COMMS__GATEWAY__LISTEN".into(),
            format!("127.0.0.1:{gateway_port}"),
        ));
        env.push(("COMMS__GATEWAY__PUBLIC_URL".into(), public.clone()));
        env
    };
    let sandbox_listen = format!("127.0.0.1:{sandbox_port}");
    let mut workers = vec![Worker::start(
        "sandbox",
        "comms-sandbox",
        &["--listen", &sandbox_listen, "--gateway-url", &public],
        &[],
    )?];
    let mut health = Vec::new();
    for (name, binary) in [
        ("gateway", "comms-gateway"),
        ("status", "comms-status"),
        ("sender-0", "comms-sender"),
        ("sender-1", "comms-sender"),
    ] {
        let port = procs::free_port()?;
        let mut env = env(port);
        if name == "status" {
            // As deployed (deploy/kubernetes/base/status.yaml): larger groups, more in flight.
            env.retain(|(k, _)| !STATUS_CONSUMER.iter().any(|(key, _)| k == key));
            env.extend(
                STATUS_CONSUMER
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            );
        }
        workers.push(Worker::start(name, binary, &[], &env)?);
        health.push(port);
    }
    let measured = async {
        for port in &health {
            procs::wait_http(
                &format!("http://127.0.0.1:{port}/readyz"),
                Duration::from_secs(30),
            )
            .await?;
        }
        procs::wait_http(&format!("{public}/healthz"), Duration::from_secs(30)).await?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        // Warm-up, not reported: connections, caches and the first groups of every worker.
        run_step(bench, &http, &public, &key, 99, STEPS[0], 5).await?;
        let mut steps = Vec::new();
        for (n, offered) in STEPS.iter().enumerate() {
            let step = run_step(bench, &http, &public, &key, n, *offered, seconds).await?;
            println!(
                "loop at {offered}/s offered: {} accepted, {} delivered, p50 {:.0} ms, p99 {:.0} ms",
                step.accepted, step.delivered, step.p50_ms, step.p99_ms
            );
            let met = step.met();
            steps.push(step);
            if !met {
                break;
            }
        }
        anyhow::Ok(steps)
    }
    .await;
    let mut rss = Vec::new();
    for worker in workers {
        rss.push(format!(
            "{} {:.0}",
            worker.name,
            worker.peak_rss_mib().unwrap_or(f64::NAN)
        ));
        worker.stop().await;
    }
    Ok(LoopRun {
        steps: measured?,
        rss: rss.join(", "),
    })
}

/// Offers `offered` requests per second for `seconds` (open loop: a request is sent on time
/// whether or not the earlier ones were answered), then waits up to 60 s for the accepted ones
/// to be delivered and measures enqueue → `delivered`.
async fn run_step(
    bench: &Bench,
    http: &reqwest::Client,
    public: &str,
    key: &str,
    step: usize,
    offered: usize,
    seconds: u64,
) -> anyhow::Result<Step> {
    let prefix = format!("loop{step}-");
    let url = format!("{public}/v1/messages");
    let bearer = format!("Bearer {key}");
    let total = offered * seconds as usize;
    let per_tick = offered.div_ceil(100);
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut calls = tokio::task::JoinSet::new();
    let mut i = 0;
    while i < total {
        ticker.tick().await;
        for n in i..(i + per_tick).min(total) {
            // Even numbers are SMS requests.
            let body = send_request(
                bench.client_id,
                &format!("{prefix}{n:07}"),
                2 * n,
                Utc::now().timestamp_millis(),
            )
            .1;
            let call = http
                .post(&url)
                .header("authorization", &bearer)
                .header("content-type", "application/json")
                .body(body);
            calls.spawn(async move { call.send().await.is_ok_and(|a| a.status().as_u16() == 202) });
        }
        i += per_tick;
    }
    let mut accepted = 0;
    while let Some(answer) = calls.join_next().await {
        accepted += usize::from(answer.unwrap_or(false));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let delivered: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM comms.messages
             WHERE delivery_state = 'delivered' AND idempotency_key LIKE $1",
        )
        .bind(format!("{prefix}%"))
        .fetch_one(&bench.pool)
        .await?;
        if delivered as usize >= accepted || Instant::now() >= deadline {
            break delivered as usize;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut samples: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM updated_at) * 1000
                 - (request->'template'->'vars'->>'t')::float8)::float8
         FROM comms.messages WHERE delivery_state = 'delivered' AND idempotency_key LIKE $1",
    )
    .bind(format!("{prefix}%"))
    .fetch_all(&bench.pool)
    .await?;
    Ok(Step {
        offered,
        accepted,
        delivered,
        p50_ms: percentile(&mut samples, 0.5),
        p99_ms: percentile(&mut samples, 0.99),
    })
}

/// Prints the steps and the highest rate that met the target.
pub fn report(run: &LoopRun) {
    println!(
        "\nwhole loop (HTTP enqueue → sent → signed callback → delivered), {}:",
        run.rss
    );
    println!("| offered/s | accepted | delivered | p50 ms | p99 ms | p99 < 1 s, all delivered |");
    println!("| ---: | ---: | ---: | ---: | ---: | --- |");
    for step in &run.steps {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {} |",
            step.offered,
            step.accepted,
            step.delivered,
            step.p50_ms,
            step.p99_ms,
            if step.met() { "yes" } else { "no" }
        );
    }
    match run
        .steps
        .iter()
        .filter(|s| s.met())
        .map(|s| s.offered)
        .max()
    {
        Some(rate) => println!("highest sustained rate with p99 under 1 s: {rate}/s"),
        None => println!("no step met p99 under 1 s with every message delivered"),
    }
}
