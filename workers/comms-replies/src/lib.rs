//! The replies worker: consumes `comms.replies` (inbound SMS from Twilio, inbound email from
//! SendGrid Inbound Parse, as the gateway published them) so that every reply reaches an owner
//! and every opt-out is honoured.

mod classify;
mod handler;
pub mod parse;
mod store;

use std::future::Future;
use std::sync::Arc;

use comms_runtime::runtime::{Runtime, run_consumer};
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;

pub use classify::{HELP, OPT_IN, OPT_OUT};

/// Consumes `comms.replies` until `shutdown`. Calling it declares the consumer as a readiness
/// check at once, before the returned future runs.
pub fn run(
    runtime: Runtime,
    shutdown: Shutdown,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    runtime.expect_consumers([&runtime.topology.replies_queue()]);
    consume(runtime, shutdown)
}

async fn consume(runtime: Runtime, shutdown: Shutdown) -> anyhow::Result<()> {
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
    comms_runtime::runtime::standalone(settings, shutdown, |runtime, shutdown| {
        run(runtime, shutdown)
    })
    .await
}
