//! `commsctl dead list|show|replay|purge`: the dead letters an operator can act on
//! (docs/operations.md#dead-letters). The rules live in `comms_domain::dead`, shared with the
//! gateway's admin API; this file parses, connects and prints.
//!
//! Every command first collects what waits in `comms.dead` into `internal.rejected_input`, so the
//! listing is complete. Listing works without the broker (with a warning); replay needs it.

use anyhow::Context;
use clap::{Args, Subcommand};
use comms_domain::dead::{self, ActionReport, ActionRequest, DeadLetter, Filter};
use comms_runtime::amqp::Publisher;
use comms_runtime::settings::Settings;
use comms_runtime::topology::Topology;
use sqlx::PgPool;

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// What comms.dead and internal.rejected_input hold, newest first: reason, origin queue and
    /// the first bytes of the payload (phone numbers, emails and secrets masked).
    List {
        #[command(flatten)]
        scope: Scope,
        /// Only dead letters whose reason contains this (case-insensitive).
        #[arg(long)]
        reason: Option<String>,
        /// Also those already replayed or purged.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
    },
    /// One dead letter: a longer masked preview, its headers, and the replay or purge that
    /// touched it.
    Show { id: i64 },
    /// Publish dead letters again to the queue they were refused on, through the normal path
    /// (pause, rate limits and idempotency apply; an already-sent message is not sent again).
    Replay {
        #[command(flatten)]
        action: ActionArgs,
        /// At most this many messages per second, e.g. 50/s.
        #[arg(long)]
        rate: Option<String>,
    },
    /// Delete dead letters' payloads (each row stays as the record of what was refused).
    Purge {
        #[command(flatten)]
        action: ActionArgs,
    },
}

/// What replay and purge share: which dead letters, and who acts why.
#[derive(Debug, Args)]
pub struct ActionArgs {
    #[command(flatten)]
    scope: Scope,
    /// Only dead letters whose reason contains this (case-insensitive).
    #[arg(long)]
    reason_contains: Option<String>,
    /// Show what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Why (required): kept with the audit record.
    #[arg(long)]
    reason: String,
    /// Who acts (defaults to the operator's login).
    #[arg(long)]
    actor: Option<String>,
}

impl ActionArgs {
    fn into_parts(self, rate: Option<f64>) -> anyhow::Result<(Filter, ActionRequest)> {
        let filter = self.scope.filter(self.reason_contains, false)?;
        let request = ActionRequest {
            actor: super::pause::operator(self.actor),
            reason: self.reason,
            dry_run: self.dry_run,
            rate,
        };
        Ok((filter, request))
    }
}

/// The filters every command shares (the reason filter is named per command).
#[derive(Debug, Args)]
pub struct Scope {
    /// Only dead letters of this origin queue, e.g. comms.send.sms.
    #[arg(long)]
    queue: Option<String>,
    /// Only those received since this time (RFC 3339) or this long ago (2h, 30m).
    #[arg(long)]
    since: Option<String>,
    /// Only this dead letter.
    #[arg(long)]
    id: Option<i64>,
}

impl Scope {
    fn filter(self, reason: Option<String>, all_states: bool) -> anyhow::Result<Filter> {
        Ok(Filter {
            queue: self.queue,
            reason,
            since: self
                .since
                .as_deref()
                .map(dead::parse_since)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--{e}"))?,
            id: self.id,
            all_states,
        })
    }
}

/// The broker link of one command: a confirm-mode publisher on the settings' namespace.
pub(crate) async fn broker(settings: &Settings) -> anyhow::Result<(lapin::Connection, Publisher)> {
    let topology = Topology::new(settings.amqp.namespace.clone());
    let connection = comms_runtime::amqp::connect(&settings.amqp, "commsctl")
        .await
        .context("cannot reach RabbitMQ")?;
    let publisher = Publisher::open(&connection).await?;
    topology.declare(publisher.channel()).await?;
    Ok((connection, publisher))
}

pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    command: DeadCommand,
    json: bool,
) -> anyhow::Result<()> {
    let topology = Topology::new(settings.amqp.namespace.clone());
    let link = broker(settings).await;
    match &link {
        Ok((_, publisher)) => {
            dead::collect(pool, publisher, &topology, dead::COLLECT_MAX).await?;
        }
        Err(error) => eprintln!(
            "warning: comms.dead could not be read ({error:#}); listing internal.rejected_input only"
        ),
    }
    let result = match command {
        DeadCommand::List {
            scope,
            reason,
            all,
            limit,
        } => {
            let filter = scope.filter(reason, all)?;
            let letters = dead::list(pool, topology.namespace(), &filter, limit).await?;
            print_list(&letters, json)
        }
        DeadCommand::Show { id } => {
            let detail = dead::show(pool, id)
                .await?
                .with_context(|| format!("no dead letter {id}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                let l = &detail.letter;
                println!("dead letter {} ({}, from the {})", l.id, l.state, l.origin);
                println!("queue:       {} (routing key {})", l.queue, l.routing_key);
                println!("received:    {}", l.received_at.format("%Y-%m-%d %H:%M:%S"));
                println!("reason:      {}", l.reason);
                println!("size:        {} bytes", l.size);
                println!("headers:     {}", detail.headers);
                if let Some(a) = &detail.action {
                    println!(
                        "{}:    action {} by {} at {}: {}",
                        a.action,
                        a.id,
                        a.actor,
                        a.started_at.format("%Y-%m-%d %H:%M:%S"),
                        a.reason
                    );
                }
                println!("payload (first bytes, masked):\n{}", l.preview);
            }
            Ok(())
        }
        DeadCommand::Replay { action, rate } => {
            let rate = rate
                .as_deref()
                .map(dead::parse_rate)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--{e}"))?;
            let (filter, request) = action.into_parts(rate)?;
            let (_, publisher) = link.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let report = dead::replay(pool, publisher, &topology, &filter, &request).await?;
            print_report(&report, json)
        }
        DeadCommand::Purge { action } => {
            let (filter, request) = action.into_parts(None)?;
            let report = dead::purge(pool, &topology, &filter, &request).await?;
            print_report(&report, json)
        }
    };
    if let Ok((connection, _)) = link {
        let _ = connection.close(200, "done".into()).await;
    }
    result
}

fn print_list(letters: &[DeadLetter], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(letters)?);
        return Ok(());
    }
    if letters.is_empty() {
        println!("no dead letters");
        return Ok(());
    }
    println!(
        "{:>6}  {:<19}  {:<24} {:<8}  {:<48}  PAYLOAD (first bytes, masked)",
        "ID", "RECEIVED", "QUEUE", "STATE", "REASON"
    );
    for l in letters {
        let reason: String = l.reason.chars().take(48).collect();
        let preview: String = l.preview.chars().take(60).collect();
        println!(
            "{:>6}  {:<19}  {:<24} {:<8}  {:<48}  {}",
            l.id,
            l.received_at.format("%Y-%m-%d %H:%M:%S"),
            l.queue,
            l.state,
            reason,
            preview
        );
    }
    Ok(())
}

fn print_report(report: &ActionReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let verb = match (report.action, report.dry_run) {
        ("replay", true) => "would replay",
        ("replay", false) => "replayed",
        (_, true) => "would purge",
        _ => "purged",
    };
    println!(
        "{verb} {} of {} matching dead letter(s){}",
        report.done,
        report.matched,
        report
            .action_id
            .map_or_else(String::new, |id| format!(" (audit record {id})"))
    );
    for s in &report.skipped {
        println!("  skipped {}: {}", s.id, s.why);
    }
    for l in &report.letters {
        let preview: String = l.preview.chars().take(60).collect();
        println!("  {:>6}  {:<24} {}", l.id, l.queue, preview);
    }
    Ok(())
}
