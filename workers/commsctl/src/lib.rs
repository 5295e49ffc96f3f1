//! The operator CLI of comms-fleet, as a library so tests drive the same code a person runs.
//!
//! Settings come from the same `COMMS_CONFIG` / `COMMS__*` layers as every worker. Commands that
//! list things accept `--json` for scripts; the default output is for a person at a terminal.

mod commands;

use clap::{Parser, Subcommand};
use comms_shared::settings::Settings;

pub use commands::status::{StatusReport, status_report};

#[derive(Debug, Parser)]
#[command(name = "commsctl", version, about = "Operate the comms-fleet: migrations, status and more")]
pub struct Cli {
    /// Print machine-readable JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if needed and apply pending migrations (safe to run concurrently).
    Migrate,
    /// Show whether the broker and database answer, queue depths and messages by state.
    Status,
}

/// Runs one command with settings from the environment.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    run_with(cli, &settings).await
}

/// Runs one command with explicit settings.
pub async fn run_with(cli: Cli, settings: &Settings) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate => commands::migrate::run(settings, cli.json).await,
        Command::Status => commands::status::run(settings, cli.json).await,
    }
}
