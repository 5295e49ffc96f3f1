//! `comms-sequences`: outreach sequences with an escalation owner and a rollback path.
//!
//! - **Scheduler** ([`scheduler`]): every `sequences.interval` it claims due enrolments in
//!   PostgreSQL (`FOR UPDATE SKIP LOCKED`), checks their exits, publishes each due step to
//!   `comms.send` as an ordinary send request (key `seq:<enrolment>:<step>`) with a publisher
//!   confirm, then moves the enrolment on in the same transaction. Rollback corrections go out the
//!   same way, once each.
//! - **Consumer** ([`handler`]): `comms.sequence.jobs` carries enrolments (`sequence.enrol`) and
//!   outcomes (`outcome.<type>`) from upstream; bad ones are rejected with their reason.
//! - **Figures** ([`figures`]): every `sequences.figures_interval` the five figures owners are
//!   judged on are read from the database into the `comms_figures_*` metrics.
//!
//! The sender stays the single owner of message state: consent, quiet hours, opt-outs, the pause
//! switch (including `sequence:<name>`) and rate limits apply to every step. Why a binary of its
//! own: docs/architecture.md.

pub mod figures;
pub mod handler;
pub mod request;
pub mod scheduler;

use std::sync::Arc;

use anyhow::Context;
use comms_runtime::clock::{Clock, SystemClock};
use comms_runtime::runtime::{Runtime, run_consumer};
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;

/// Runs the consumer and the scheduler until `shutdown`, on the wall clock. Calling it declares
/// the consumer as a readiness check at once.
pub fn run(
    runtime: Runtime,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
    run_with_clock(runtime, Arc::new(SystemClock), shutdown)
}

/// [`run`] with the clock that decides when steps are due (tests control it).
pub fn run_with_clock(
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
    runtime.expect_consumers([&runtime.topology.sequence_queue()]);
    work(runtime, clock, shutdown)
}

async fn work(runtime: Runtime, clock: Arc<dyn Clock>, shutdown: Shutdown) -> anyhow::Result<()> {
    let scheduler = tokio::spawn(scheduler::run(
        runtime.clone(),
        clock.clone(),
        shutdown.clone(),
    ));
    let figures = tokio::spawn(figures::run(runtime.clone(), shutdown.clone()));
    let handler = Arc::new(handler::SequenceHandler::new(runtime.pool.clone(), clock));
    let queue = runtime.topology.sequence_queue();
    run_consumer(runtime, queue, handler, shutdown).await;
    scheduler.await.context("the sequence scheduler crashed")?;
    figures.await.context("the figures refresh crashed")?;
    Ok(())
}

/// The `comms-sequences` binary: health endpoints plus [`run`].
pub async fn run_standalone(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    comms_runtime::runtime::standalone(settings, shutdown, |runtime, shutdown| {
        run(runtime, shutdown)
    })
    .await
}
