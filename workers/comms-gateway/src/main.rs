//! `comms-gateway`: provider webhooks and the enqueue API. Thin: the CLI is comms-shared's, the work is the library's.

use comms_runtime::cli::WorkerArgs;

const ABOUT: &str = "Provider webhooks in, the enqueue and admin APIs";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = WorkerArgs::parse_for("comms-gateway", ABOUT);
    comms_runtime::cli::main(
        "comms-gateway",
        &args,
        comms_gateway::check_settings,
        comms_gateway::run_standalone,
    )
    .await
}
