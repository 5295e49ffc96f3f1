//! `commsctl pause`, `commsctl resume`, `commsctl pause status` and `commsctl held`: the on-call
//! engineer's switch. With no scope flag, pause and resume mean global; a reason is mandatory.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use comms_domain::pause::store::{self, PauseRequest};
use comms_domain::pause::{ActivePause, Scope};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Which scope a command is about (at most one flag; none means global).
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// A channel: sms, email or portal.
    #[arg(long, conflicts_with_all = ["kind", "client", "sequence"])]
    pub channel: Option<String>,
    /// A message kind, e.g. outreach.
    #[arg(long, conflicts_with_all = ["client", "sequence"])]
    pub kind: Option<String>,
    /// A client id: every message attached to it or its leads, projects, reports.
    #[arg(long, conflicts_with = "sequence")]
    pub client: Option<Uuid>,
    /// A sequence name: every step of that outreach sequence (scope `sequence:<name>`).
    #[arg(long)]
    pub sequence: Option<String>,
}

impl ScopeArgs {
    pub fn scope(&self) -> anyhow::Result<Scope> {
        use comms_domain::contract::{Channel, Kind};
        if let Some(channel) = &self.channel {
            channel
                .parse::<Channel>()
                .map_err(|e| anyhow::anyhow!("--channel: {e}"))?;
            return Ok(Scope::Channel(channel.clone()));
        }
        if let Some(kind) = &self.kind {
            kind.parse::<Kind>()
                .map_err(|e| anyhow::anyhow!("--kind: {e}"))?;
            return Ok(Scope::Kind(kind.clone()));
        }
        if let Some(name) = &self.sequence {
            if !comms_domain::sequences::valid_name(name) {
                anyhow::bail!("--sequence: expected a sequence name ([a-z0-9_.-]{{1,100}})");
            }
            return Ok(Scope::Sequence(name.clone()));
        }
        Ok(self.client.map_or(Scope::Global, Scope::Client))
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PauseArgs {
    #[command(subcommand)]
    pub action: Option<PauseAction>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Why (required): shown to every operator and kept in the history.
    #[arg(long)]
    pub reason: Option<String>,
    /// Resume by itself after this long, e.g. 2h or 30m.
    #[arg(long = "for")]
    pub duration: Option<humantime::Duration>,
    /// Who pauses (defaults to the operator's login: $USER, $LOGNAME or the OS account).
    #[arg(long)]
    pub actor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PauseAction {
    /// What is paused, since when, by whom, why, until when, and how many messages it holds.
    Status,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Why (required).
    #[arg(long)]
    pub reason: Option<String>,
    /// Who resumes (defaults to the operator's login: $USER, $LOGNAME or the OS account).
    #[arg(long)]
    pub actor: Option<String>,
}

/// Who is pausing or resuming, for the audit trail: `--actor`, else the operator's login
/// (`$USER`, `$LOGNAME`, else the name of the account commsctl runs as), and `commsctl` only when
/// none of them is known.
pub fn operator(given: Option<String>) -> String {
    given
        .into_iter()
        .chain(std::env::var("USER").ok())
        .chain(std::env::var("LOGNAME").ok())
        .chain(whoami::fallible::username().ok())
        .map(|name| name.trim().to_string())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "commsctl".into())
}

pub async fn pause(pool: &PgPool, args: PauseArgs, json: bool) -> anyhow::Result<()> {
    if matches!(args.action, Some(PauseAction::Status)) {
        return status(pool, json).await;
    }
    let reason = args
        .reason
        .filter(|r| !r.trim().is_empty())
        .context("a pause needs --reason: say why, for whoever reads it at 3 a.m.")?;
    let expires_at = match args.duration {
        Some(d) => {
            Some(Utc::now() + chrono::Duration::from_std(d.into()).context("--for is too long")?)
        }
        None => None,
    };
    let request = PauseRequest {
        scope: args.scope.scope()?,
        reason,
        actor: operator(args.actor),
        expires_at,
        automatic: false,
    };
    let pause = store::pause(pool, &request).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&pause)?);
    } else {
        println!(
            "paused {} by {}: {}{}",
            pause.scope,
            pause.actor,
            pause.reason,
            pause
                .expires_at
                .map(|t| format!(" (until {})", t.to_rfc3339()))
                .unwrap_or_default()
        );
        println!(
            "every worker applies it at once (NOTIFY) or within its poll interval; nothing covered is dispatched after that"
        );
    }
    Ok(())
}

pub async fn resume(pool: &PgPool, args: ResumeArgs, json: bool) -> anyhow::Result<()> {
    let reason = args
        .reason
        .filter(|r| !r.trim().is_empty())
        .context("a resume needs --reason")?;
    let scope = args.scope.scope()?;
    let actor = operator(args.actor);
    let ended = store::resume(pool, &scope, &reason, &actor).await?;
    let held = held_under(pool, ended.id).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "resumed": ended.scope, "by": actor, "held_to_release": held })
        );
    } else {
        println!(
            "resumed {} by {actor}: {held} held message(s) are released in creation order",
            ended.scope
        );
    }
    Ok(())
}

async fn held_under(pool: &PgPool, pause: Uuid) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM comms.messages WHERE delivery_state = 'held' AND held_by_pause = $1",
    )
    .bind(pause)
    .fetch_one(pool)
    .await?)
}

#[derive(Serialize)]
struct StatusLine {
    #[serde(flatten)]
    pause: ActivePause,
    held: i64,
}

async fn status(pool: &PgPool, json: bool) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for pause in store::active(pool).await? {
        let held = held_under(pool, pause.id).await?;
        lines.push(StatusLine { pause, held });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    if lines.is_empty() {
        println!("nothing is paused");
        return Ok(());
    }
    println!(
        "{:<44} {:<20} {:<16} {:<20} {:>5}  REASON",
        "SCOPE", "SINCE", "BY", "EXPIRES", "HELD"
    );
    for line in lines {
        let p = &line.pause;
        println!(
            "{:<44} {:<20} {:<16} {:<20} {:>5}  {}{}{}",
            p.scope.to_string(),
            p.started_at.format("%Y-%m-%d %H:%M:%S"),
            p.actor,
            p.expires_at.map_or_else(
                || "never".into(),
                |t| t.format("%Y-%m-%d %H:%M:%S").to_string()
            ),
            line.held,
            p.reason,
            if p.automatic { " [automatic]" } else { "" },
            p.incident
                .map(|incident| format!(" [incident {incident}]"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

#[derive(Serialize, sqlx::FromRow)]
struct HeldMessage {
    id: Uuid,
    idempotency_key: String,
    channel: String,
    kind: String,
    created_at: DateTime<Utc>,
    scope: Option<String>,
    scope_value: Option<String>,
    reason: Option<String>,
}

/// `commsctl held`: every held message, oldest first, with the pause that holds it.
pub async fn held(pool: &PgPool, json: bool) -> anyhow::Result<()> {
    let held: Vec<HeldMessage> = sqlx::query_as(
        "SELECT m.id, m.idempotency_key, m.channel, m.kind, m.created_at, p.scope, p.scope_value, p.reason
         FROM comms.messages m LEFT JOIN comms.pauses p ON p.id = m.held_by_pause
         WHERE m.delivery_state = 'held' ORDER BY m.created_at, m.id",
    )
    .fetch_all(pool)
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&held)?);
        return Ok(());
    }
    if held.is_empty() {
        println!("no message is held");
        return Ok(());
    }
    for m in held {
        let by = match (m.scope, m.scope_value) {
            (Some(s), Some(v)) if !v.is_empty() => {
                format!("{s}={v}: {}", m.reason.unwrap_or_default())
            }
            (Some(s), _) => format!("{s}: {}", m.reason.unwrap_or_default()),
            _ => "its pause ended; waiting for release".into(),
        };
        println!(
            "{}  {}  {:<6} {:<16} {}  held by {by}",
            m.created_at.format("%Y-%m-%d %H:%M:%S"),
            m.id,
            m.channel,
            m.kind,
            m.idempotency_key
        );
    }
    Ok(())
}
