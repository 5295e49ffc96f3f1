//! `comms-events`: publishes lifecycle events (the outbox) to comms.events, emits task.overdue, and delivers signed webhooks. Thin: the CLI is comms-shared's, the work is the library's.

use comms_runtime::cli::WorkerArgs;

const ABOUT: &str = "Publishes lifecycle events (the outbox) to comms.events, emits task.overdue, and delivers signed webhooks";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = WorkerArgs::parse_for("comms-events", ABOUT);
    comms_runtime::cli::main(
        "comms-events",
        &args,
        |_| Ok(()),
        comms_events::run_standalone,
    )
    .await
}
