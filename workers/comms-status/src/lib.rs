//! `comms-status`: delivery-status ingestion.
//!
//! Consumes `comms.status` (verified provider callbacks the gateway published as `status.*`),
//! turns Twilio statuses and SendGrid events into one canonical, forward-only delivery state per
//! message, records suppressions and opt-outs, keeps the raw payloads internal, runs the
//! provider freshness watchdog that pauses a channel whose provider went quiet, and reconciles
//! messages left `sent` without a final status by asking their provider ([`reconcile`]). See
//! `docs/gateway.md` for the mapping table and the rules.

mod effects;
pub mod event;
mod group;
pub mod handler;
mod metrics;
pub mod partial_loss;
pub mod reconcile;
pub mod sendgrid;
pub mod store;
pub mod twilio;
pub mod watchdog;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use comms_runtime::runtime::{Runtime, run_consumer};
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;

pub use handler::StatusHandler;
pub use partial_loss::{PartialLoss, Threshold, check_partial_loss};
pub use watchdog::{AutoPause, FRESHNESS_REASON, check_freshness};

/// The handler, from the runtime's settings.
pub fn build_handler(runtime: &Runtime) -> StatusHandler {
    StatusHandler {
        pool: runtime.pool.clone(),
        unknown_retry_for: runtime.settings.status.unknown_message_retry_for,
        max_retries: runtime.settings.consumer.max_retries,
    }
}

/// Consumes `comms.status` and runs the freshness watchdog and the reconciler (tasks for [`watchdog::DEFAULT_OWNER`])
/// until `shutdown`, then drains. Calling it declares the consumer as a readiness check at once.
pub fn run(
    runtime: Runtime,
    shutdown: Shutdown,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    run_with_owner(runtime, watchdog::DEFAULT_OWNER.to_string(), shutdown)
}

/// Like [`run`], with the owner of the watchdog's tasks named.
pub fn run_with_owner(
    runtime: Runtime,
    watchdog_owner: String,
    shutdown: Shutdown,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    runtime.expect_consumers([&runtime.topology.status_queue()]);
    consume(runtime, watchdog_owner, shutdown)
}

async fn consume(
    runtime: Runtime,
    watchdog_owner: String,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let handler = Arc::new(build_handler(&runtime));
    let watchdog = tokio::spawn(watchdog::run(
        runtime.clone(),
        watchdog_owner,
        shutdown.clone(),
    ));
    let reconciler = tokio::spawn(reconcile::run(runtime.clone(), shutdown.clone()));
    let queue = runtime.topology.status_queue();
    run_consumer(runtime, queue, handler, shutdown).await;
    watchdog.await.context("the freshness watchdog crashed")?;
    reconciler.await.context("the reconciler crashed")?;
    Ok(())
}

/// The `comms-status` binary: health endpoints plus [`run`].
pub async fn run_standalone(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    comms_runtime::runtime::standalone(settings, shutdown, |runtime, shutdown| {
        run(runtime, shutdown)
    })
    .await
}
