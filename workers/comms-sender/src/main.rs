//! `comms-sender`: consumes `comms.send.*` and dispatches through the providers. Thin: the CLI is comms-shared's, the work is the library's.

use comms_runtime::cli::WorkerArgs;

const ABOUT: &str = "Consumes comms.send.sms, comms.send.email and comms.send.portal and sends through the providers";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = WorkerArgs::parse_for("comms-sender", ABOUT);
    comms_runtime::cli::main(
        "comms-sender",
        &args,
        |_| Ok(()),
        comms_sender::run_standalone,
    )
    .await
}
