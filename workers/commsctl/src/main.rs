//! `commsctl`: the operator's command line. Everything it does lives in the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = commsctl::Cli::parse();
    match commsctl::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("commsctl: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
