//! `comms-digest`: builds report digests and flushes notification batches.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = comms_shared::settings::Settings::load().context("loading settings")?;
    let telemetry = comms_shared::telemetry::init(&settings.log, "comms-digest");
    let shutdown = comms_shared::shutdown::on_signals();
    let result = comms_digest::run_standalone(settings, shutdown).await;
    telemetry.finish().await;
    result
}
