//! `commsctl approvals` (what waits, what was decided, expiry, delegates), `commsctl approve`,
//! `commsctl reject` and `commsctl review`: the owner's side of the approval workflow.
//!
//! The rules live in `comms_domain::approvals`, shared with the gateway's admin API; this file
//! only parses, prints, and hands an approved message back to the sender.

use anyhow::Context;
use clap::{Args, Subcommand};
use comms_domain::approvals::{self, Decided, Decision};
use comms_runtime::amqp::Publisher;
use comms_runtime::settings::Settings;
use comms_runtime::topology::Topology;
use sqlx::PgPool;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    pub action: Option<ApprovalsAction>,
    /// Only messages this person may decide on (as owner or delegate).
    #[arg(long)]
    pub owner: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsAction {
    /// Recent decisions: who decided, when, and how long the approval took.
    Decided {
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
    },
    /// Block every message that waited longer than `approvals.expire_after` (senders also do this).
    Expire,
    /// Name a delegate who may decide on the owner's messages (only the owner may).
    Delegate(DelegateArgs),
    /// Remove a delegate (only the owner may).
    Undelegate(DelegateArgs),
    /// List every owner's delegates.
    Delegates,
}

#[derive(Debug, Args)]
pub struct DelegateArgs {
    /// The owner whose messages the delegate may decide on.
    #[arg(long)]
    pub owner: String,
    /// The delegate.
    #[arg(long = "to")]
    pub delegate: String,
    /// Who makes the change (defaults to $USER); must be the owner.
    #[arg(long = "as")]
    pub actor: Option<String>,
}

/// Who decides: `--as`, else `$USER`.
pub fn actor(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default()
}

/// "3d 4h", "1h 32m", "12m", "45s".
pub fn human(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    args: ApprovalsArgs,
    json: bool,
) -> anyhow::Result<()> {
    match args.action {
        None => waiting(pool, args.owner.as_deref(), json).await,
        Some(ApprovalsAction::Decided { limit }) => decided(pool, limit, json).await,
        Some(ApprovalsAction::Expire) => expire(pool, settings, json).await,
        Some(ApprovalsAction::Delegate(a)) => {
            let d = approvals::add_delegate(pool, &a.owner, &a.delegate, &actor(a.actor)).await?;
            print(json, &d, || {
                format!("{} may now decide on {}'s messages", d.delegate, d.owner)
            })
        }
        Some(ApprovalsAction::Undelegate(a)) => {
            let removed =
                approvals::remove_delegate(pool, &a.owner, &a.delegate, &actor(a.actor)).await?;
            let value =
                serde_json::json!({ "owner": a.owner, "delegate": a.delegate, "removed": removed });
            print(json, &value, || match removed {
                true => format!("{} no longer decides for {}", a.delegate, a.owner),
                false => format!("{} was not a delegate of {}", a.delegate, a.owner),
            })
        }
        Some(ApprovalsAction::Delegates) => {
            let all = approvals::delegates(pool).await?;
            print(json, &all, || {
                if all.is_empty() {
                    return "no delegates".into();
                }
                all.iter()
                    .map(|d| {
                        format!(
                            "{:<20} → {:<20} since {}",
                            d.owner,
                            d.delegate,
                            d.created_at.format("%Y-%m-%d")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}

/// `commsctl approvals expire`: blocks what waited longer than `approvals.expire_after`.
async fn expire(pool: &PgPool, settings: &Settings, json: bool) -> anyhow::Result<()> {
    let expired = approvals::expire_due(pool, settings.approvals.expire_after).await?;
    print(json, &expired, || {
        let mut lines = vec![format!(
            "{} message(s) expired after waiting longer than {}",
            expired.len(),
            humantime::format_duration(settings.approvals.expire_after)
        )];
        lines.extend(expired.iter().map(|d| {
            format!(
                "  {}  {}  owner {}",
                d.message_id, d.idempotency_key, d.owner
            )
        }));
        lines.join("\n")
    })
}

fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}

async fn waiting(pool: &PgPool, owner: Option<&str>, json: bool) -> anyhow::Result<()> {
    let waiting = approvals::waiting(pool, owner).await?;
    print(json, &waiting, || {
        if waiting.is_empty() {
            return "nothing waits for a decision".into();
        }
        let mut lines = vec![format!(
            "{:<36}  {:<12} {:>7}  {:<16} {:<7} {:<10} SUBJECT · PREVIEW",
            "ID", "OWNER", "AGE", "KIND", "CHANNEL", "WAITS FOR"
        )];
        for w in &waiting {
            let flags = match (w.contains_roi, w.ai_draft) {
                (true, true) => " [ROI, AI draft]",
                (true, false) => " [ROI]",
                (false, true) => " [AI draft]",
                _ => "",
            };
            lines.push(format!(
                "{:<36}  {:<12} {:>7}  {:<16} {:<7} {:<10} {}{} · {}",
                w.id,
                w.owner,
                human(w.age_seconds),
                w.kind,
                w.channel,
                w.waits_for.as_str(),
                w.subject.as_deref().unwrap_or("(no subject)"),
                flags,
                w.preview
            ));
        }
        lines.join("\n")
    })
}

async fn decided(pool: &PgPool, limit: i64, json: bool) -> anyhow::Result<()> {
    let records = approvals::decided(pool, limit).await?;
    print(json, &records, || {
        if records.is_empty() {
            return "no decisions yet".into();
        }
        let mut lines = vec![format!(
            "{:<20} {:<36}  {:<14} {:<24} {:>7}  REASON",
            "DECIDED", "MESSAGE", "DECISION", "BY", "TOOK"
        )];
        for r in &records {
            let by = match &r.on_behalf_of {
                Some(owner) => format!("{} for {owner}", r.decided_by),
                None => r.decided_by.clone(),
            };
            lines.push(format!(
                "{:<20} {:<36}  {:<14} {:<24} {:>7}  {}",
                r.decided_at.format("%Y-%m-%d %H:%M:%S"),
                r.message_id,
                r.decision,
                by,
                human(r.approval_seconds.unwrap_or(0.0)),
                r.reason.as_deref().unwrap_or("")
            ));
        }
        lines.join("\n")
    })
}

/// `commsctl approve`, `reject` and `review --safe`: records the decision, then hands an approved
/// message back to the sender. The decision stands even if the broker cannot be reached: the
/// senders' housekeeping publishes it then.
pub async fn decide(
    pool: &PgPool,
    settings: &Settings,
    reference: &str,
    decision: Decision,
    actor: String,
    json: bool,
) -> anyhow::Result<()> {
    let decided = approvals::decide(pool, reference, decision, &actor).await?;
    let handed_back = if decided.goes_on() {
        match republish(settings, pool, &decided).await {
            Ok(()) => Some(true),
            Err(error) => {
                eprintln!(
                    "warning: the decision is recorded, but handing the message back to the sender failed ({error:#}); a running sender publishes it again within a minute"
                );
                Some(false)
            }
        }
    } else {
        None
    };
    if json {
        let mut value = serde_json::to_value(&decided)?;
        value["handed_to_sender"] = serde_json::json!(handed_back);
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let by = match &decided.on_behalf_of {
        Some(owner) => format!("{} for {owner}", decided.decided_by),
        None => decided.decided_by.clone(),
    };
    println!(
        "{} {} ({}) by {by}, {} after the request",
        decided.decision,
        decided.message_id,
        decided.idempotency_key,
        human(decided.approval_seconds)
    );
    match handed_back {
        Some(true) => println!(
            "handed back to the sender: it goes out through the pause switch and rate limits"
        ),
        Some(false) => {}
        None => println!(
            "not sent; the message is blocked ({})",
            decided.reason.as_deref().unwrap_or("")
        ),
    }
    Ok(())
}

async fn republish(settings: &Settings, pool: &PgPool, decided: &Decided) -> anyhow::Result<()> {
    let topology = Topology::new(settings.amqp.namespace.clone());
    let connection = comms_runtime::amqp::connect(&settings.amqp, "commsctl")
        .await
        .context("cannot reach RabbitMQ")?;
    let publisher = Publisher::open(&connection).await?;
    topology.declare(publisher.channel()).await?;
    let published = approvals::republish(pool, &publisher, &topology, decided.message_id).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(published?)
}
