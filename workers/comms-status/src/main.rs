//! `comms-status`: consumes `comms.status` and keeps delivery states current. Thin: the CLI is comms-shared's, the work is the library's.

use comms_runtime::cli::WorkerArgs;

const ABOUT: &str =
    "Consumes comms.status (provider delivery callbacks) and keeps delivery states current";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = WorkerArgs::parse_for("comms-status", ABOUT);
    comms_runtime::cli::main(
        "comms-status",
        &args,
        |_| Ok(()),
        comms_status::run_standalone,
    )
    .await
}
