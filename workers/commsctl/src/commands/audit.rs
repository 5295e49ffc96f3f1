//! `commsctl audit access [--who] [--contact] [--since]`: who read personal data with full
//! addresses, through what, when and why (docs/privacy.md). The list holds references, never the
//! addresses read.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use comms_domain::privacy::access::{self, AccessFilter};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Reads of full addresses and content, newest first.
    Access(AccessArgs),
}

#[derive(Debug, Args)]
pub struct AccessArgs {
    /// Only reads by this person (or API key name).
    #[arg(long)]
    who: Option<String>,
    /// Only reads about this contact.
    #[arg(long)]
    contact: Option<Uuid>,
    /// Only reads since this long ago (`24h`, `7d`) or this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(i64).range(1..))]
    limit: i64,
}

pub async fn run(pool: &PgPool, command: AuditCommand, json: bool) -> anyhow::Result<()> {
    let AuditCommand::Access(args) = command;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let filter = AccessFilter {
        who: args.who,
        contact: args.contact,
        since,
        limit: args.limit,
    };
    let entries = access::list(pool, &filter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!("no recorded reads");
        return Ok(());
    }
    for e in &entries {
        let about = match (e.message_id, e.contact_id) {
            (Some(m), _) => format!("message {m}"),
            (None, Some(c)) => format!("contact {c}"),
            (None, None) => String::new(),
        };
        println!(
            "{}  {:<16} {:<9} {}  {}  why: {}",
            e.occurred_at.format("%Y-%m-%d %H:%M:%S"),
            e.who,
            e.via,
            e.what,
            about,
            e.why.as_deref().unwrap_or("(not given)")
        );
    }
    Ok(())
}

/// `24h` (that long ago) or an RFC 3339 time.
fn parse_since(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|e| {
        anyhow::anyhow!("--since: `{text}` is neither a duration (24h) nor an RFC 3339 time: {e}")
    })?;
    Ok(Utc::now() - chrono::Duration::from_std(ago)?)
}
