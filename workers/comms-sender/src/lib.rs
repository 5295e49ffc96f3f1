//! The sender worker: consumes `comms.send.sms`, `comms.send.email` and `comms.send.portal`, and
//! is the only path by which anything reaches a recipient.
//!
//! One [`sender::SendHandler`] serves the three queues; the shared runtime supplies everything
//! else (ack after commit, retry tiers, dead-lettering, reconnects, draining).

mod answer_kept;
mod breaker;
mod failover;
mod group;
pub mod handler;
mod intake;
mod one;
mod outcomes;
pub mod portal_safe;
pub mod providers;
mod quiet_hours;
mod rate;
pub mod render;
/// A request rendered with its template version looked up as the sender looks it up.
pub use rules::facts::render as render_request;
mod rules;
/// How long after its provider call started a message still in `sending` is failed as
/// `dispatch_outcome_unknown` (docs/reliability.md#the-window-of-dispatch_outcome_unknown).
pub use rules::outcome_unknown_after;
pub mod sender;
mod settle;
mod store;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use chrono::NaiveTime;
use comms_domain::pause::release::housekeeping;
use comms_domain::pause::switch::{PauseSwitch, report, watch};
use comms_runtime::clock::{Clock, SystemClock};
use comms_runtime::runtime::{Runtime, run_consumer};
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;
use comms_runtime::topology::WorkQueue;

use crate::sender::SendHandler;
/// The fingerprint an approval covers; shared with the approval workflow so both hash alike.
pub use comms_domain::approvals::approval_hash;

/// The channels the sender consumes, one queue each.
pub const CHANNELS: [&str; 3] = ["sms", "email", "portal"];

/// Builds the handler from validated settings.
pub fn build_handler(
    runtime: &Runtime,
    clock: Arc<dyn Clock>,
    switch: PauseSwitch,
) -> anyhow::Result<SendHandler> {
    let settings = runtime.settings.clone();
    let parse_time = |key: &str, value: &str| {
        NaiveTime::parse_from_str(value, "%H:%M").with_context(|| format!("{key} must be HH:MM"))
    };
    let window = quiet_hours::Window {
        opens: parse_time("sender.quiet_hours_end", &settings.sender.quiet_hours_end)?,
        closes: parse_time(
            "sender.quiet_hours_start",
            &settings.sender.quiet_hours_start,
        )?,
    };
    let default_zone = settings
        .sender
        .default_time_zone
        .parse()
        .map_err(|_| anyhow::anyhow!("sender.default_time_zone is not an IANA time zone"))?;
    let providers =
        providers::Providers::new(settings.clone(), runtime.pool.clone(), clock.clone())
            .context("building the providers")?;
    Ok(SendHandler {
        pool: runtime.pool.clone(),
        breaker: breaker::Breaker::new(&settings.pause, providers.failover()),
        providers,
        limits: rate::RateLimits::new(&settings.rate, runtime.pool.clone()),
        switch,
        settings,
        clock,
        window,
        default_zone,
    })
}

/// Consumes every send queue until `shutdown`, then drains. Calling it declares the three
/// consumers as readiness checks at once (see [`run_with_switch`]).
pub fn run(
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    let switch = PauseSwitch::new(runtime.settings.pause.max_staleness);
    run_with_switch(runtime, clock, switch, shutdown)
}

/// [`run`] with a pause switch the caller can observe (tests, the all-in-one process).
///
/// The consumers are declared as readiness checks when this is called, not when the returned
/// future first runs, so a health server started after the call never reads ready before every
/// send queue has its consumer (the pause switch is loaded first, which takes a while).
pub fn run_with_switch(
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    switch: PauseSwitch,
    shutdown: Shutdown,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    let queues: Vec<WorkQueue> = CHANNELS
        .iter()
        .map(|channel| runtime.topology.send_queue(channel))
        .collect();
    runtime.expect_consumers(&queues);
    consume(runtime, clock, switch, queues, shutdown)
}

async fn consume(
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    switch: PauseSwitch,
    queues: Vec<WorkQueue>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let handler = Arc::new(build_handler(&runtime, clock, switch.clone())?);
    let settings = &runtime.settings.pause;
    let watcher = tokio::spawn(watch(
        runtime.pool.clone(),
        switch.clone(),
        runtime.health.clone(),
        settings.poll_interval,
        shutdown.clone(),
    ));
    let housekeeper = tokio::spawn(housekeeping(
        runtime.clone(),
        switch.clone(),
        shutdown.clone(),
    ));
    let approvals = tokio::spawn(comms_domain::approvals::housekeeping(
        runtime.clone(),
        shutdown.clone(),
    ));
    // A worker that has never confirmed the switch does not consume, let alone send.
    while !switch.has_loaded() {
        report(&switch, &runtime.health);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
    let consumers: Vec<_> = queues
        .into_iter()
        .map(|queue| {
            tokio::spawn(run_consumer(
                runtime.clone(),
                queue,
                handler.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    for consumer in consumers {
        consumer.await.context("a send consumer crashed")?;
    }
    watcher.await.context("pause watcher crashed")?;
    housekeeper.await.context("pause housekeeping crashed")?;
    approvals.await.context("approval housekeeping crashed")?;
    Ok(())
}

/// The `comms-sender` binary: health endpoints plus [`run`] with the wall clock.
pub async fn run_standalone(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    comms_runtime::runtime::standalone(settings, shutdown, |runtime, shutdown| {
        run(runtime, Arc::new(SystemClock), shutdown)
    })
    .await
}
