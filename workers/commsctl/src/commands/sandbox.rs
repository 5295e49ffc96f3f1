//! `commsctl sandbox reply`: a person answering an SMS, for first runs and demos.
//!
//! The sandbox provider (`make run`) signs and sends the gateway the same inbound webhook Twilio
//! would; this is the operator's handle on it, so the walk-through can show reply capture and
//! STOP without a phone. Nothing here touches the real providers.

use anyhow::Context;
use clap::{Args, Subcommand};
use comms_sandbox::{InboundSpec, SandboxClient};

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Simulate an inbound SMS: the sandbox posts a signed Twilio inbound webhook to the gateway.
    Reply(ReplyArgs),
}

#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// Who texts (E.164), e.g. +14155552671.
    #[arg(long)]
    pub from: String,
    /// What they text, e.g. STOP, START, HELP or any reply.
    #[arg(long)]
    pub body: String,
    /// The number they text (E.164); by default the number that last texted them.
    #[arg(long)]
    pub to: Option<String>,
    /// The sandbox's base URL.
    #[arg(
        long,
        env = "COMMS_SANDBOX_URL",
        default_value = "http://127.0.0.1:8025"
    )]
    pub sandbox_url: String,
}

pub async fn run(command: SandboxCommand, json: bool) -> anyhow::Result<()> {
    let SandboxCommand::Reply(args) = command;
    let client = SandboxClient::new(args.sandbox_url.clone());
    let spec = InboundSpec {
        from: args.from,
        body: args.body,
        to: args.to,
    };
    let sent = client.inbound(&spec).await.with_context(|| {
        format!(
            "the sandbox at {} did not deliver the reply (is `make run` running?)",
            args.sandbox_url
        )
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&sent)?);
    } else {
        println!(
            "reply {} from {} to {} accepted by the gateway ({}); follow it with: commsctl tasks, commsctl message",
            sent.message_sid, sent.from, sent.to, sent.gateway_status
        );
    }
    Ok(())
}
