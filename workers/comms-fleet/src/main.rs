//! `comms-fleet`: the whole fleet in one process. Thin: the wiring lives in `lib.rs`, the CLI's
//! shared part (`--check-config`) in comms-shared.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = comms_fleet::Options::parse();
    let args = options.worker.clone();
    comms_runtime::cli::main(
        "comms-fleet",
        &args,
        comms_fleet::check_settings,
        |settings, shutdown| comms_fleet::run(settings, options, shutdown),
    )
    .await
}
