//! `comms-gateway`: provider webhooks and the enqueue API. Thin: the server lives in the library.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = comms_shared::settings::Settings::load().context("loading settings")?;
    let telemetry = comms_shared::telemetry::init(&settings.log, "comms-gateway");
    let shutdown = comms_shared::shutdown::on_signals();
    let result = comms_gateway::run_standalone(settings, shutdown).await;
    telemetry.finish().await;
    result
}
