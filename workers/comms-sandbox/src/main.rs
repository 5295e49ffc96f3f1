//! The `comms-sandbox` binary: runs the provider sandbox for local runs and CI, configured by flags
//! or environment variables. All behaviour lives in the library; this only parses and logs.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use comms_sandbox::{
    DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN, SandboxConfig, SendGridSigner,
    is_twilio_sid,
};
use tracing_subscriber::EnvFilter;

/// A local Twilio/SendGrid stand-in that records sends, injects faults and posts signed callbacks.
#[derive(Parser, Debug)]
#[command(name = "comms-sandbox", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "COMMS_SANDBOX_LISTEN", default_value = "127.0.0.1:8025")]
    listen: SocketAddr,
    /// Gateway base URL that receives status callbacks; without it no callbacks are sent.
    #[arg(long, env = "COMMS_SANDBOX_GATEWAY_URL")]
    gateway_url: Option<String>,
    /// Account SID Twilio API calls must authenticate as (`AC` + 32 hex digits).
    #[arg(long, env = "COMMS_SANDBOX_TWILIO_ACCOUNT_SID", default_value = DEFAULT_TWILIO_ACCOUNT_SID)]
    twilio_account_sid: String,
    /// Auth token Twilio API calls must authenticate with; also signs Twilio status callbacks
    /// (X-Twilio-Signature).
    #[arg(
        long,
        env = "COMMS_SANDBOX_TWILIO_AUTH_TOKEN",
        default_value = DEFAULT_TWILIO_AUTH_TOKEN,
        hide_default_value = true,
        hide_env_values = true
    )]
    twilio_auth_token: String,
    /// P-256 private key (PKCS#8 PEM or base64 DER) for SendGrid event signatures; generated at
    /// start when absent.
    #[arg(
        long,
        env = "COMMS_SANDBOX_SENDGRID_SIGNING_KEY",
        hide_env_values = true
    )]
    sendgrid_signing_key: Option<String>,
    /// Milliseconds to wait before each callback.
    #[arg(long, env = "COMMS_SANDBOX_CALLBACK_DELAY_MS", default_value_t = 0)]
    callback_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if !is_twilio_sid(&args.twilio_account_sid, "AC") {
        anyhow::bail!("--twilio-account-sid must be AC followed by 32 hex digits, as Twilio's are");
    }

    let signer = match &args.sendgrid_signing_key {
        Some(key) => SendGridSigner::from_encoded(key).context("loading --sendgrid-signing-key")?,
        None => {
            let signer = SendGridSigner::generate().context("generating a SendGrid signing key")?;
            tracing::info!(
                public_key = signer.public_key_base64(),
                "generated a SendGrid signing key for this run"
            );
            signer
        }
    };
    if let Some(url) = &args.gateway_url {
        reqwest::Url::parse(url).with_context(|| format!("--gateway-url {url:?} is not a URL"))?;
    }
    let mut config = SandboxConfig::new(signer);
    config.twilio_account_sid = args.twilio_account_sid;
    config.gateway_url = args.gateway_url;
    config.twilio_auth_token = args.twilio_auth_token;
    config.callback_delay = Duration::from_millis(args.callback_delay_ms);

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

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
