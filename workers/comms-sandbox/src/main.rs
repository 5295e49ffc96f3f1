//! The `comms-sandbox` binary: runs the provider sandbox for local runs and CI, configured by flags
//! or environment variables. Thin: the flags live in `cli.rs`, all behaviour in the library.

use anyhow::Context;
use clap::Parser;
use comms_sandbox::cli::{Args, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.config()?;
    if args.check_config {
        print!("{}", args.describe());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    if args.sendgrid_signing_key.is_none() {
        tracing::info!(
            public_key = config.sendgrid_signer.public_key_base64(),
            "generated a SendGrid signing key for this run"
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        gateway = config.gateway_url.as_deref().unwrap_or("(none: callbacks off)"),
        sendgrid_public_key = config.sendgrid_signer.public_key_base64(),
        "comms-sandbox listening"
    );
    comms_sandbox::serve(listener, config, shutdown_signal()).await?;
    tracing::info!("comms-sandbox stopped");
    Ok(())
}
