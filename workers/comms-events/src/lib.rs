//! `comms-events`: upstream apps hear back without reading the database.
//!
//! Four loops, all safe to run in several replicas at once:
//! - the **outbox relay** publishes the rows the database's triggers wrote into
//!   `comms.event_outbox` (one per recorded change) to the `comms.events` exchange, with publisher
//!   confirms, and marks them published only after the broker confirmed ([`relay`]);
//! - the **overdue check** stamps open tasks past their due time, which makes the database emit
//!   `task.overdue` ([`overdue`]);
//! - the **webhook deliveries** consume `comms.webhooks` (every event) and POST each to the
//!   registered webhooks of its app, signed, with retries and a disabling threshold
//!   ([`webhooks`]). A slow or failing endpoint holds up only this queue, never sending;
//! - the **retention run** removes personal content past its retention, in small batches, one
//!   replica at a time ([`retention`], docs/privacy.md).
//!
//! See docs/upstream.md.

pub mod overdue;
pub mod relay;
pub mod retention;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use comms_runtime::runtime::{Runtime, run_consumer};
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;

/// Runs the relay, the overdue check and the webhook consumer until `shutdown`. Calling it
/// declares its readiness checks (the webhook consumer, the relay) at once, before `/readyz`
/// first answers.
pub fn run(
    runtime: Runtime,
    shutdown: Shutdown,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    runtime.expect_consumers([&runtime.topology.webhooks_queue()]);
    runtime
        .health
        .expect(relay::HEALTH_CHECK, "not connected to the broker yet");
    work(runtime, shutdown)
}

async fn work(runtime: Runtime, shutdown: Shutdown) -> anyhow::Result<()> {
    let relay = tokio::spawn(relay::run(runtime.clone(), shutdown.clone()));
    let overdue = tokio::spawn(overdue::run(runtime.clone(), shutdown.clone()));
    let retention = tokio::spawn(retention::run(runtime.clone(), shutdown.clone()));
    let handler = Arc::new(webhooks::WebhookHandler::new(&runtime)?);
    let queue = runtime.topology.webhooks_queue();
    run_consumer(runtime, queue, handler, shutdown).await;
    relay.await.context("the outbox relay crashed")?;
    overdue.await.context("the overdue check crashed")?;
    retention.await.context("the retention run crashed")?;
    Ok(())
}

/// The `comms-events` binary: health endpoints plus [`run`].
pub async fn run_standalone(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    comms_runtime::runtime::standalone(settings, shutdown, |runtime, shutdown| {
        run(runtime, shutdown)
    })
    .await
}
