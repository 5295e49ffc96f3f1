//! Webhook traffic must not slow sending: the same send run with and without `comms-events`
//! publishing every lifecycle event and delivering each one to an endpoint that answers only after
//! two seconds. A slow app holds up its own deliveries (the `comms.webhooks` queue), never the
//! sender, which writes its events to the outbox in the same statements it already runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use comms_domain::webhooks::{NewWebhook, register};

use crate::load::Bench;
use crate::procs::{self, Worker};
use crate::send_phase::throughput_named;

/// What the scenario measured.
pub struct WebhookCost {
    pub without: f64,
    pub with: f64,
    pub events_per_second: f64,
    pub calls: u64,
    pub rss: String,
}

/// An endpoint that answers 200 after `delay`, counting the calls that reached it.
async fn slow_endpoint(delay: Duration) -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, calls))
}

pub async fn slow_endpoint_cost(bench: &Bench, count: usize) -> anyhow::Result<WebhookCost> {
    let (without, _) = throughput_named(bench, "wh-off-", count, 1).await?;

    let (url, calls) = slow_endpoint(Duration::from_secs(2)).await?;
    let hook = NewWebhook {
        app: None,
        url,
        events: vec!["*".into()],
        owner: "bench".into(),
    };
    let registered = register(&bench.pool, &hook, true).await?;
    // Only this run's events: what earlier scenarios wrote is not this scenario's traffic.
    sqlx::query("UPDATE comms.event_outbox SET published_at = now() WHERE published_at IS NULL")
        .execute(&bench.pool)
        .await?;
    let port = procs::free_port()?;
    let mut env = bench.sender_env(port);
    env.push(("COMMS__EVENTS__WEBHOOK_ALLOW_PRIVATE".into(), "true".into()));
    env.push(("COMMS__CONSUMER__CONCURRENCY".into(), "256".into()));
    env.push(("COMMS__CONSUMER__PREFETCH".into(), "512".into()));
    let events = Worker::start("events", "comms-events", &[], &env)?;
    procs::wait_http(
        &format!("http://127.0.0.1:{port}/readyz"),
        Duration::from_secs(30),
    )
    .await?;
    let started = std::time::Instant::now();
    let published_before: i64 = published(bench).await?;
    let run = throughput_named(bench, "wh-on-", count, 1).await;
    let published_after: i64 = published(bench).await?;
    let seconds = started.elapsed().as_secs_f64().max(0.001);
    let rss = format!("events {:.0}", events.peak_rss_mib().unwrap_or(f64::NAN));
    events.stop().await;
    sqlx::query("UPDATE comms.webhooks SET state = 'removed' WHERE id = $1")
        .bind(registered.id)
        .execute(&bench.pool)
        .await?;
    let (with, _) = run?;
    Ok(WebhookCost {
        without,
        with,
        events_per_second: (published_after - published_before) as f64 / seconds,
        calls: calls.load(Ordering::Relaxed),
        rss,
    })
}

async fn published(bench: &Bench) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar(
            "SELECT count(*) FROM comms.event_outbox WHERE published_at IS NOT NULL",
        )
        .fetch_one(&bench.pool)
        .await?,
    )
}
