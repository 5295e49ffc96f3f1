//! `commsctl incident declare|update|verify|resolve|show|list` and `incident resume-automation`:
//! the on-call engineer's and the owner's side of the incident worker (docs/incidents.md).
//!
//! declare/update/verify/resolve publish an incident event to `comms.incident` exactly as incident
//! tooling would (checked by the worker's own decoder first), then wait briefly for the worker to
//! apply it. show/list/resume-automation use `comms_domain::incidents::ops`, as the gateway does.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use comms_domain::incidents::event::{Affected, EventType, Severity, TemplateRef};
use comms_domain::incidents::ops::{self, Change, Declaration, Prepared};
use comms_runtime::settings::Settings;
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::approvals::human;
use super::pause::operator;

/// How long declare/update/verify/resolve wait for the worker to apply their event.
const APPLY_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Declare an incident (sequence 1); unverified facts pause the affected clients.
    Declare(DeclareArgs),
    /// Publish the next event of an incident: its latest one with these changes.
    Update {
        id: Uuid,
        #[command(flatten)]
        change: ChangeArgs,
        /// Set whether the facts are verified (true or false).
        #[arg(long)]
        facts_verified: Option<bool>,
        /// A new title (internal: never in a notice).
        #[arg(long)]
        title: Option<String>,
        /// A new severity: minor, major or critical.
        #[arg(long)]
        severity: Option<String>,
    },
    /// The facts are verified: closes the owner's verify task and queues a notice. It does NOT
    /// lift the pause: that is `resume-automation`.
    Verify {
        id: Uuid,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Resolve an incident: the resolution notice goes out and the owner's tasks close.
    Resolve {
        id: Uuid,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// The incident's timeline: events, pauses, approvals, notices with counts, skips by reason.
    Show { id: Uuid },
    /// The most recent incidents.
    List {
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
    },
    /// The owner's recorded decision that lifts the client pauses the incident caused.
    ResumeAutomation {
        id: Uuid,
        /// Who decides: the incident's owner or a delegate the owner named.
        #[arg(long)]
        by: String,
    },
}

#[derive(Debug, Args)]
pub struct DeclareArgs {
    #[arg(long)]
    title: String,
    /// minor, major or critical.
    #[arg(long)]
    severity: String,
    /// An affected client id (repeatable).
    #[arg(long = "client")]
    clients: Vec<Uuid>,
    /// An affected project id (repeatable); a project stands for its client.
    #[arg(long = "project")]
    projects: Vec<Uuid>,
    /// Who approves the notices and decides on resuming automation.
    #[arg(long)]
    owner: String,
    /// The facts are verified already (no pause; the first notice waits for approval).
    #[arg(long)]
    verified: bool,
    /// The incident id (a new one when absent).
    #[arg(long)]
    id: Option<Uuid>,
    #[command(flatten)]
    change: ChangeArgs,
}

/// What every event may carry or change.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// The incident template's base name (`<name>.sms|email|portal`).
    #[arg(long)]
    template: Option<String>,
    #[arg(long)]
    template_version: Option<i32>,
    /// A template variable, `name=value` (repeatable); merged into the latest ones on updates.
    #[arg(long = "var", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Kept internal (internal.incident_notes), never published.
    #[arg(long)]
    summary_internal: Option<String>,
}

fn parse_var(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{raw}` is not name=value"))
}

fn severity(raw: &str) -> anyhow::Result<Severity> {
    serde_json::from_value(Value::String(raw.to_string()))
        .map_err(|_| anyhow::anyhow!("--severity: `{raw}` is not one of minor, major, critical"))
}

impl ChangeArgs {
    fn vars(&self) -> Map<String, Value> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()
    }

    fn into_change(self) -> Change {
        let vars = self.vars();
        let template = self.template.map(|name| TemplateRef {
            name,
            version: self.template_version,
            vars: vars.clone(),
        });
        Change {
            vars: (template.is_none() && !vars.is_empty()).then_some(vars),
            template,
            summary_internal: self.summary_internal,
            ..Change::default()
        }
    }
}

pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    command: IncidentCommand,
    json: bool,
) -> anyhow::Result<()> {
    let source = format!("commsctl ({})", operator(None));
    let (kind, event) = match command {
        IncidentCommand::Declare(args) => {
            let change = args.change.into_change();
            let declared = Declaration {
                incident_id: args.id,
                title: args.title,
                severity: severity(&args.severity)?,
                affected: Affected {
                    clients: args.clients,
                    projects: args.projects,
                },
                facts_verified: args.verified,
                owner: args.owner,
                occurred_at: None,
                template: change.template,
                summary_internal: change.summary_internal,
            };
            if let Some(id) = declared.incident_id {
                ops::check_new(pool, id).await?;
            }
            (EventType::Declared, ops::declaration(declared, &source))
        }
        IncidentCommand::Update {
            id,
            change,
            facts_verified,
            title,
            severity: new_severity,
        } => {
            let change = Change {
                facts_verified,
                title,
                severity: new_severity.as_deref().map(severity).transpose()?,
                ..change.into_change()
            };
            let kind = EventType::Updated;
            (kind, ops::follow_up(pool, id, kind, change, &source).await?)
        }
        IncidentCommand::Verify { id, change } => {
            let kind = EventType::FactsVerified;
            let change = change.into_change();
            (kind, ops::follow_up(pool, id, kind, change, &source).await?)
        }
        IncidentCommand::Resolve { id, change } => {
            let kind = EventType::Resolved;
            let change = change.into_change();
            (kind, ops::follow_up(pool, id, kind, change, &source).await?)
        }
        IncidentCommand::Show { id } => return show(pool, id, json).await,
        IncidentCommand::List { limit } => return list(pool, limit, json).await,
        IncidentCommand::ResumeAutomation { id, by } => {
            let resumed = ops::resume_automation(pool, id, &by).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&resumed)?);
            } else {
                println!(
                    "automation resumed for incident {id} by {by}: {} client pause(s) lifted; held messages are released once, in order",
                    resumed.clients.len()
                );
            }
            return Ok(());
        }
    };
    let prepared = ops::prepare(kind, event).context("the event is invalid; nothing was sent")?;
    ops::check_affected(pool, &prepared.event.affected).await?;
    publish(settings, &prepared).await?;
    let applied = wait_applied(pool, &prepared).await?;
    let (id, sequence) = (prepared.event.incident_id, prepared.event.sequence);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "published": true, "incident_id": id, "sequence": sequence,
                "routing_key": prepared.routing_key(), "applied": applied,
            })
        );
    } else {
        println!(
            "published {} #{sequence} for incident {id}",
            prepared.routing_key()
        );
        if applied {
            println!("applied by comms-incidents; follow it with: commsctl incident show {id}");
        } else {
            println!(
                "not applied yet: is comms-incidents running? A refused event is in `internal.rejected_input` with its reason"
            );
        }
    }
    Ok(())
}

async fn publish(settings: &Settings, prepared: &Prepared) -> anyhow::Result<()> {
    let (connection, publisher, topology) = super::send::broker(settings).await?;
    ops::publish_event(&publisher, &topology, prepared)
        .await
        .context("the broker did not accept the event")?;
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

/// Whether the worker applied the event (the incident reached its sequence) within
/// [`APPLY_WAIT`], polling the incident row.
async fn wait_applied(pool: &PgPool, prepared: &Prepared) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + APPLY_WAIT;
    loop {
        // Applied means its effects are visible: the sequence taken and, for a resolution, the
        // incident resolved (the worker records that right after the sequence).
        let found: Option<(i64, String)> =
            sqlx::query_as("SELECT sequence, state FROM comms.incidents WHERE id = $1")
                .bind(prepared.event.incident_id)
                .fetch_optional(pool)
                .await?;
        let resolving = prepared.kind == EventType::Resolved;
        if found.is_some_and(|(sequence, state)| {
            sequence >= prepared.event.sequence && (!resolving || state == "resolved")
        }) {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn list(pool: &PgPool, limit: i64, json: bool) -> anyhow::Result<()> {
    let incidents = ops::list(pool, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&incidents)?);
        return Ok(());
    }
    if incidents.is_empty() {
        println!("no incidents");
    }
    for i in incidents {
        println!(
            "{}  {:<8} {:<9} #{:<3} {:<10} {:>4} client(s){}{}  {}",
            i.id,
            i.severity,
            i.state,
            i.sequence,
            i.owner,
            i.clients,
            if i.facts_verified {
                ""
            } else {
                "  FACTS NOT VERIFIED"
            },
            if i.automation_paused { "  PAUSED" } else { "" },
            i.title
        );
    }
    Ok(())
}

async fn show(pool: &PgPool, id: Uuid, json: bool) -> anyhow::Result<()> {
    let shown = ops::show(pool, id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(());
    }
    let i = &shown.incident;
    println!(
        "incident {}  {} ({}), owner {}",
        i.id, i.title, i.severity, i.owner
    );
    println!(
        "state {}, sequence {}, facts {}, automation {}",
        i.state,
        i.sequence,
        if i.facts_verified {
            "verified"
        } else {
            "NOT verified"
        },
        if i.automation_paused {
            "PAUSED"
        } else {
            "running"
        }
    );
    let time = |t: Option<f64>| t.map_or_else(|| "-".into(), human);
    println!(
        "time to first notice {}, time to resolution {}",
        time(shown.time_to_first_notice_seconds),
        time(shown.time_to_resolution_seconds)
    );
    for client in &shown.paused_clients {
        println!("paused by this incident: client {client}");
    }
    for n in &shown.notices {
        println!(
            "notice #{} {} ({}): {}{}",
            n.sequence,
            n.purpose,
            n.template,
            n.state,
            n.decided_by
                .as_ref()
                .map(|by| format!(" by {by}"))
                .unwrap_or_default()
        );
        for (channel, state, count) in &n.messages {
            println!("    {channel:<6} {state:<18} {count}");
        }
        for (reason, count) in &n.skipped_by_reason {
            println!("    skipped {reason:<12} {count}");
        }
    }
    println!("timeline:");
    for t in &shown.timeline {
        println!(
            "  {}  {:<28} {:<24} {}",
            t.at.format("%Y-%m-%d %H:%M:%S"),
            t.what,
            t.actor,
            t.detail
        );
    }
    Ok(())
}
