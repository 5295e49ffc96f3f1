//! `task.overdue`: open tasks past their due time are stamped once (`overdue_at`); the database's
//! task trigger turns the stamp into the event, in the same transaction.

use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;

/// Stamps overdue tasks now; returns how many became overdue.
pub async fn check(pool: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    let stamped = sqlx::query(
        "UPDATE comms.tasks SET overdue_at = now()
         WHERE state = 'open' AND overdue_at IS NULL AND due_at < now()",
    )
    .execute(pool)
    .await?;
    Ok(stamped.rows_affected())
}

/// Checks every `events.overdue_interval` until `shutdown`.
pub async fn run(runtime: Runtime, shutdown: Shutdown) {
    let interval = runtime.settings.events.overdue_interval;
    loop {
        match check(&runtime.pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tasks = n, "tasks became overdue"),
            Err(error) => tracing::warn!(%error, "overdue check failed; trying again"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
