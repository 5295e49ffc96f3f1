//! `comms-sequences`: runs outreach sequences. Thin: the CLI is comms-shared's, the work is the
//! library's.

use comms_runtime::cli::WorkerArgs;

const ABOUT: &str = "Runs outreach sequences: sends each due step once through comms.send, and consumes enrolments and outcomes from comms.sequence.jobs";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = WorkerArgs::parse_for("comms-sequences", ABOUT);
    comms_runtime::cli::main(
        "comms-sequences",
        &args,
        |_| Ok(()),
        comms_sequences::run_standalone,
    )
    .await
}
