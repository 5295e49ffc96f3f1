//! `commsctl retention run [--dry-run]`: remove personal content past its retention now, in small
//! batches, as the scheduled run in `comms-events` does (docs/privacy.md). `--dry-run` counts what
//! would be removed and changes nothing; both are recorded in `comms.retention_runs`.

use clap::Subcommand;
use comms_domain::privacy::retention;
use comms_runtime::settings::Settings;
use sqlx::PgPool;

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Remove expired content now (counts per class are printed and recorded, never content).
    Run {
        /// Count what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    command: RetentionCommand,
    json: bool,
) -> anyhow::Result<()> {
    let RetentionCommand::Run { dry_run } = command;
    let actor = format!("commsctl ({})", super::approvals::actor(None));
    let report = retention::run(
        pool,
        &settings.retention,
        chrono::Utc::now(),
        dry_run,
        &actor,
        None,
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let Some(id) = report.run_id else {
        anyhow::bail!("another retention run is working right now; try again when it is done");
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "retention run #{id}{}",
        if dry_run { " (dry run)" } else { "" }
    );
    for class in retention::CLASSES {
        match (report.cutoffs.get(class), report.counts.get(class)) {
            (Some(cutoff), Some(count)) => println!(
                "  {class:<20} {verb} {count} (recorded before {})",
                cutoff.format("%Y-%m-%d %H:%M")
            ),
            _ => println!("  {class:<20} kept forever (retention 0 days)"),
        }
    }
    Ok(())
}
