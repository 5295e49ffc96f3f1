//! `comms-digest`: report digests clients can trust, and notification batching that never loses
//! or doubles an event.
//!
//! - **Report digests** (`digest.report`, [`report`]): a period's digest is built from client
//!   notes, communication outcomes and sourced figures, blocked (with an owner task) when a
//!   revenue figure is unverified or data is stale without an approved caveat, approved by the
//!   owner, then handed to the sender once per recipient and channel with a deterministic key.
//! - **Notification batching** (`digest.batch`, [`batch`]): events for one key are collected in
//!   PostgreSQL and flushed as one send request when the window ends or the count is reached.
//! - **Schedule** ([`schedule`]): `digest.schedule` enqueues jobs for closed periods.
//!
//! The sender stays the single owner of message state: this worker only publishes send requests.
//! See docs/digests.md.

pub mod batch;
pub mod handler;
pub mod job;
pub mod metrics;
pub mod report;
pub mod schedule;

use std::sync::Arc;

use anyhow::Context;
use comms_runtime::clock::{Clock, SystemClock};
use comms_runtime::runtime::{Runtime, run_consumer};
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;

/// Runs the job consumer, the batch flusher and the schedule until `shutdown`, on the wall clock.
/// Calling it declares the consumer as a readiness check at once.
pub fn run(
    runtime: Runtime,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
    run_with_clock(runtime, Arc::new(SystemClock), shutdown)
}

/// [`run`] with the clock that decides flush times and freshness (tests control it).
pub fn run_with_clock(
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
    runtime.expect_consumers([&runtime.topology.digest_queue()]);
    // The schedule counts occurrences from the moment the worker is started, not first polled.
    let since = clock.now();
    work(runtime, clock, since, shutdown)
}

async fn work(
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    since: chrono::DateTime<chrono::Utc>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    schedule::parse(&runtime.settings.digest.schedule).map_err(anyhow::Error::msg)?;
    let flusher = tokio::spawn(batch::flush::run(
        runtime.clone(),
        clock.clone(),
        shutdown.clone(),
    ));
    let scheduler = tokio::spawn(schedule::run(
        runtime.clone(),
        clock.clone(),
        since,
        shutdown.clone(),
    ));
    let handler = Arc::new(handler::DigestHandler::new(runtime.clone(), clock));
    let queue = runtime.topology.digest_queue();
    run_consumer(runtime, queue, handler, shutdown).await;
    flusher.await.context("the batch flusher crashed")?;
    scheduler.await.context("the digest schedule crashed")?;
    Ok(())
}

/// The `comms-digest` binary: health endpoints plus [`run`].
pub async fn run_standalone(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    comms_runtime::runtime::standalone(settings, shutdown, |runtime, shutdown| {
        run(runtime, shutdown)
    })
    .await
}
