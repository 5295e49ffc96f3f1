//! `comms-events`: publishes lifecycle events and delivers webhooks.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = comms_shared::settings::Settings::load().context("loading settings")?;
    let telemetry = comms_shared::telemetry::init(&settings.log, "comms-events");
    let shutdown = comms_shared::shutdown::on_signals();
    let result = comms_events::run_standalone(settings, shutdown).await;
    telemetry.finish().await;
    result
}
