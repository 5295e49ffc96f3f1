//! The scheduled retention run: every `retention.interval`, personal content past its retention
//! is removed in small batches (`comms_domain::privacy::retention`, docs/privacy.md). Replicas
//! take turns through the job's advisory lock; `0s` turns the schedule off.

use comms_domain::privacy::retention;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;

/// Who the runs are recorded as.
pub const ACTOR: &str = "comms-events";

/// Runs the job every `retention.interval` until `shutdown`.
pub async fn run(runtime: Runtime, shutdown: Shutdown) {
    let settings = &runtime.settings.retention;
    if settings.interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(settings.interval) => {}
        }
        let now = chrono::Utc::now();
        match retention::run(&runtime.pool, settings, now, false, ACTOR, Some(&shutdown)).await {
            Ok(report) if report.run_id.is_none() => {
                tracing::debug!("retention: another replica is running it");
            }
            Ok(report) => {
                let removed: u64 = report.counts.values().sum();
                tracing::info!(retention.run = report.run_id, retention.removed = removed, counts = ?report.counts, "retention run");
            }
            Err(error) => {
                tracing::warn!(%error, "retention run failed; trying again next interval")
            }
        }
    }
}
