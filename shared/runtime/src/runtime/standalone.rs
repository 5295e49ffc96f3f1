//! One worker as its own process: what every worker binary does around its `run`.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

use super::Runtime;
use crate::settings::Settings;
use crate::shutdown::Shutdown;

/// Opens a lazily connected pool and the shared runtime, serves `/healthz`, `/readyz` and
/// `/metrics` on `http.listen`, and runs `worker` until `shutdown`. The worker is created before
/// the health server starts, so the readiness checks it declares on creation are in place before
/// `/readyz` can first answer.
pub async fn standalone<F, Fut>(
    settings: Settings,
    shutdown: Shutdown,
    worker: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Runtime, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let settings = Arc::new(settings);
    let pool = crate::db::connect_lazy(&settings.database)?;
    let runtime = Runtime::new(settings.clone(), pool);
    let health_state = runtime.health.clone();
    let work = worker(runtime, shutdown.clone());
    let health = tokio::spawn(crate::health::serve(
        settings.http.listen,
        health_state,
        shutdown,
    ));
    work.await?;
    health
        .await
        .context("health server task")?
        .context("health server")?;
    Ok(())
}
