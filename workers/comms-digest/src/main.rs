//! `comms-digest`: builds report digests and flushes notification batches. Thin: the CLI is
//! comms-shared's, the work is the library's.

use comms_runtime::cli::WorkerArgs;

const ABOUT: &str = "Consumes comms.digest.jobs: builds report digests with sourced figures and flushes notification batches";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = WorkerArgs::parse_for("comms-digest", ABOUT);
    comms_runtime::cli::main(
        "comms-digest",
        &args,
        |_| Ok(()),
        comms_digest::run_standalone,
    )
    .await
}
