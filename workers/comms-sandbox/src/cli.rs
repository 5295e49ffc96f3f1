//! The `comms-sandbox` command line: its flags (each with an environment variable), turning them
//! into a [`SandboxConfig`], and `--check-config`, which prints that configuration with its secrets
//! masked and exits, like every binary of the fleet.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::{
    DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN, SandboxConfig, SendGridSigner,
    is_twilio_sid,
};

/// How a secret reads in `--check-config` (the same as the workers' mask).
const MASK: &str = "********";

/// A local Twilio/SendGrid stand-in that records sends, injects faults and posts signed callbacks.
#[derive(Parser, Debug)]
#[command(name = "comms-sandbox", version)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "COMMS_SANDBOX_LISTEN", default_value = "127.0.0.1:8025")]
    pub listen: SocketAddr,
    /// Gateway base URL that receives status callbacks and simulated inbound SMS; without it no
    /// callbacks are sent.
    #[arg(long, env = "COMMS_SANDBOX_GATEWAY_URL")]
    pub gateway_url: Option<String>,
    /// Account SID Twilio API calls must authenticate as (`AC` + 32 hex digits).
    #[arg(long, env = "COMMS_SANDBOX_TWILIO_ACCOUNT_SID", default_value = DEFAULT_TWILIO_ACCOUNT_SID)]
    pub twilio_account_sid: String,
    /// Auth token Twilio API calls must authenticate with; also signs Twilio status callbacks and
    /// simulated inbound SMS (X-Twilio-Signature).
    #[arg(
        long,
        env = "COMMS_SANDBOX_TWILIO_AUTH_TOKEN",
        default_value = DEFAULT_TWILIO_AUTH_TOKEN,
        hide_default_value = true,
        hide_env_values = true
    )]
    pub twilio_auth_token: String,
    /// P-256 private key (PKCS#8 PEM or base64 DER) for SendGrid event signatures; generated at
    /// start when absent.
    #[arg(
        long,
        env = "COMMS_SANDBOX_SENDGRID_SIGNING_KEY",
        hide_env_values = true
    )]
    pub sendgrid_signing_key: Option<String>,
    /// Milliseconds to wait before each callback.
    #[arg(long, env = "COMMS_SANDBOX_CALLBACK_DELAY_MS", default_value_t = 0)]
    pub callback_delay_ms: u64,
    /// Extra attempts for a callback the gateway refused or did not answer (waits from 100 ms,
    /// doubling, at most 5 s apart).
    #[arg(long, env = "COMMS_SANDBOX_CALLBACK_RETRIES", default_value_t = 3)]
    pub callback_retries: u32,
    /// Validate the configuration, print it with every secret masked, and exit: 0 when it is
    /// valid, 1 with the reason when not. Nothing is bound or started.
    #[arg(long)]
    pub check_config: bool,
}

impl Args {
    /// The sandbox configuration these flags describe, validated (a key that does not load or a
    /// gateway URL that is not a URL is an error naming the flag).
    pub fn config(&self) -> anyhow::Result<SandboxConfig> {
        let signer = match &self.sendgrid_signing_key {
            Some(key) => {
                SendGridSigner::from_encoded(key).context("loading --sendgrid-signing-key")?
            }
            None => SendGridSigner::generate().context("generating a SendGrid signing key")?,
        };
        if !is_twilio_sid(&self.twilio_account_sid, "AC") {
            anyhow::bail!(
                "--twilio-account-sid must be AC followed by 32 hex digits, as Twilio's are"
            );
        }
        if let Some(url) = &self.gateway_url {
            reqwest::Url::parse(url)
                .with_context(|| format!("--gateway-url {url:?} is not a URL"))?;
        }
        let mut config = SandboxConfig::new(signer);
        config.twilio_account_sid = self.twilio_account_sid.clone();
        config.gateway_url = self.gateway_url.clone();
        config.twilio_auth_token = self.twilio_auth_token.clone();
        config.callback_delay = Duration::from_millis(self.callback_delay_ms);
        config.callback_retries = self.callback_retries;
        Ok(config)
    }

    /// The configuration as `key = value` lines, secrets masked.
    pub fn describe(&self) -> String {
        let key = if self.sendgrid_signing_key.is_some() {
            MASK
        } else {
            "(generated at start)"
        };
        format!(
            "# comms-sandbox: the configuration is valid; secrets are shown as {MASK}\n\
             listen = {}\ngateway_url = {}\ntwilio_account_sid = {}\ntwilio_auth_token = {MASK}\n\
             sendgrid_signing_key = {key}\ncallback_delay_ms = {}\ncallback_retries = {}\n",
            self.listen,
            self.gateway_url
                .as_deref()
                .unwrap_or("(none: callbacks off)"),
            self.twilio_account_sid,
            self.callback_delay_ms,
            self.callback_retries,
        )
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
