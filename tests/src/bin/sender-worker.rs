//! `comms-sender` as a child process the tests can kill -9 (the same `run_standalone` as the
//! `comms-sender` binary; cargo builds this one for the tests, which it would not do for another
//! package's binary).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = comms_runtime::settings::Settings::load()?;
    let shutdown = comms_runtime::shutdown::on_signals();
    comms_sender::run_standalone(settings, shutdown).await
}
