//! Refreshes the `comms_figures_*` metrics (`comms_domain::outcomes::figures`) from the database
//! every `sequences.figures_interval`, so `/metrics` on this worker carries the five figures
//! whichever process recorded the events behind them. A failed read keeps the previous values
//! (their `comms_figures_refreshed_timestamp_seconds` then ages) and is retried next interval.

use comms_domain::outcomes::figures;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;

/// Runs until `shutdown`; does nothing when the interval is zero.
pub async fn run(runtime: Runtime, shutdown: Shutdown) {
    let interval = runtime.settings.sequences.figures_interval;
    if interval.is_zero() {
        return;
    }
    figures::register();
    loop {
        if let Err(error) = figures::refresh(&runtime.pool, chrono::Utc::now()).await {
            tracing::warn!(%error, "the figures could not be read; the metrics keep their last values");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
