//! `comms-fleet`: the whole fleet in one process. Thin: the wiring lives in `lib.rs`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = comms_fleet::Options::parse();
    match comms_fleet::run(options).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("comms-fleet: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
