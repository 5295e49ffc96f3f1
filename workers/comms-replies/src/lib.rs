//! The replies worker: consumes `comms.replies` (inbound SMS from Twilio, inbound email from
//! SendGrid Inbound Parse, as the gateway published them) so that every reply reaches an owner
//! and every opt-out is honoured.

mod classify;
mod handler;
pub mod parse;
mod store;

use std::sync::Arc;

use anyhow::Context;
use comms_shared::runtime::{Runtime, run_consumer};
use comms_shared::settings::Settings;
use comms_shared::shutdown::Shutdown;

pub use classify::{HELP, OPT_IN, OPT_OUT};

/// Consumes `comms.replies` until `shutdown`.
pub async fn run(runtime: Runtime, shutdown: Shutdown) -> anyhow::Result<()> {
    let handler = Arc::new(handler::RepliesHandler {
        pool: runtime.pool.clone(),
        settings: runtime.settings.clone(),
        topology: runtime.topology.clone(),
        publisher: tokio::sync::Mutex::new(None),
    });
    let queue = runtime.topology.replies_queue();
    run_consumer(runtime, queue, handler, shutdown).await;
    Ok(())
}

/// The `comms-replies` binary: health endpoints plus [`run`].
pub async fn run_standalone(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let pool = comms_shared::db::connect_lazy(&settings.database)?;
    let runtime = Runtime::new(settings.clone(), pool);
    let health = tokio::spawn(comms_shared::health::serve(
        settings.http.listen,
        runtime.health.clone(),
        shutdown.clone(),
    ));
    run(runtime, shutdown).await?;
    health
        .await
        .context("health task")?
        .context("health server")?;
    Ok(())
}
