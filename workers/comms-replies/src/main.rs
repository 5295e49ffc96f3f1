//! `comms-replies`: consumes `comms.replies` (inbound SMS and email). Thin: the CLI is comms-shared's, the work is the library's.

use comms_runtime::cli::WorkerArgs;

const ABOUT: &str =
    "Consumes comms.replies (inbound SMS and email): reply capture, STOP/START/HELP";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = WorkerArgs::parse_for("comms-replies", ABOUT);
    comms_runtime::cli::main(
        "comms-replies",
        &args,
        |_| Ok(()),
        comms_replies::run_standalone,
    )
    .await
}
