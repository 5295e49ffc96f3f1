//! The incident fan-out worker: consumes `comms.incident.jobs` (incident events from incident
//! tooling, `commsctl incident` and the admin API), pauses automated sending to affected clients
//! while an incident's facts are not verified, and sends each approved, client-safe notice to
//! every affected contact once, through `comms.send` (docs/incidents.md).

mod approval;
mod fanout;
mod handler;
mod metrics;
mod store;
mod targets;

use std::sync::Arc;

use comms_runtime::amqp::Publisher;
use comms_runtime::runtime::{Runtime, run_consumer};
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;
use tokio::sync::Notify;

pub use comms_domain::incidents::event::{self, EventType, IncidentEvent};
pub use comms_domain::incidents::ops;

/// Who the worker records as the actor of what it does by itself.
pub const ACTOR: &str = "comms-incidents";

/// Consumes `comms.incident.jobs` and runs the fan-out until `shutdown`. Calling it declares the
/// consumer as a readiness check at once, before `/readyz` first answers.
pub fn run(
    runtime: Runtime,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
    let queue = incident_queue(&runtime);
    if let Some(queue) = &queue {
        runtime.expect_consumers([queue]);
    }
    work(runtime, queue, shutdown)
}

fn incident_queue(runtime: &Runtime) -> Option<comms_runtime::topology::WorkQueue> {
    let exchange = runtime.topology.incident_exchange();
    runtime
        .topology
        .work_queues()
        .into_iter()
        .find(|q| q.exchange == exchange)
}

async fn work(
    runtime: Runtime,
    queue: Option<comms_runtime::topology::WorkQueue>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let queue = queue.ok_or_else(|| anyhow::anyhow!("the topology declares no incident queue"))?;
    let wake = Arc::new(Notify::new());
    let handler = Arc::new(handler::IncidentHandler {
        pool: runtime.pool.clone(),
        settings: runtime.settings.clone(),
        wake: wake.clone(),
    });
    let driver = tokio::spawn(drive(runtime.clone(), wake, shutdown.clone()));
    run_consumer(runtime, queue, handler, shutdown).await;
    driver
        .await
        .map_err(|e| anyhow::anyhow!("fan-out task: {e}"))?;
    Ok(())
}

/// The `comms-incidents` binary: health endpoints plus [`run`].
pub async fn run_standalone(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    comms_runtime::runtime::standalone(settings, shutdown, |runtime, shutdown| {
        run(runtime, shutdown)
    })
    .await
}

/// Runs the fan-out on every wake-up (a notice queued) and every `incidents.check_interval`
/// (approval decisions, unfinished fan-outs after a restart).
async fn drive(runtime: Runtime, wake: Arc<Notify>, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(runtime.settings.incidents.check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut publisher: Option<(lapin::Connection, Publisher)> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = wake.notified() => {}
            _ = ticker.tick() => {}
        }
        if publisher.as_ref().is_none_or(|(_, p)| !p.is_usable()) {
            publisher = connect(&runtime).await;
        }
        let Some((_, channel)) = publisher.as_ref() else {
            continue;
        };
        if let Err(error) = step(&runtime, channel).await {
            tracing::warn!(%error, "incident fan-out step failed; will retry");
            publisher = None;
        }
    }
    if let Some((connection, _)) = publisher {
        let _ = connection.close(200, "shutdown".into()).await;
    }
}

async fn connect(runtime: &Runtime) -> Option<(lapin::Connection, Publisher)> {
    let connection = comms_runtime::amqp::connect(&runtime.settings.amqp, "comms-incidents-fanout")
        .await
        .map_err(|error| tracing::warn!(%error, "fan-out cannot reach the broker"))
        .ok()?;
    let publisher = Publisher::open(&connection).await.ok()?;
    Some((connection, publisher))
}

/// One pass: proofs for notices that need approval, decisions taken, approved notices fanned out.
async fn step(runtime: &Runtime, publisher: &Publisher) -> Result<(), fanout::FanoutError> {
    let pool = &runtime.pool;
    let exchange = runtime.topology.send_exchange();
    for notice in &fanout::awaiting_approval(pool).await? {
        approval::advance(pool, publisher, &exchange, notice).await?;
    }
    let chunk = runtime.settings.incidents.chunk_size.max(1);
    for id in fanout::approved(pool).await? {
        fanout::fan_out(pool, publisher, &exchange, id, chunk).await?;
    }
    Ok(())
}
