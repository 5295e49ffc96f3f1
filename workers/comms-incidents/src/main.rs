//! `comms-incidents`: consumes comms.incident.jobs (incident events): pauses unverified clients and fans approved notices out once. Thin: the CLI is comms-shared's, the work is the library's.

use comms_runtime::cli::WorkerArgs;

const ABOUT: &str = "Consumes comms.incident.jobs (incident events): pauses unverified clients and fans approved notices out once";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = WorkerArgs::parse_for("comms-incidents", ABOUT);
    comms_runtime::cli::main(
        "comms-incidents",
        &args,
        |_| Ok(()),
        comms_incidents::run_standalone,
    )
    .await
}
