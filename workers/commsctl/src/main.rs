//! `commsctl`: the operator's command line. Everything it does lives in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    commsctl::quiet_on_closed_output();
    let cli = commsctl::Cli::parse_checked();
    match commsctl::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("commsctl: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
