//! `commsctl templates`: create draft versions, approve them, list them.
//!
//! A new body is always a new version; an approved version never changes (the database refuses).

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Create a new draft version of a template from a file.
    Add {
        #[arg(long)]
        name: String,
        /// sms, email or portal.
        #[arg(long)]
        channel: String,
        /// File holding the body (minijinja syntax; every variable must be sent).
        #[arg(long)]
        file: std::path::PathBuf,
        /// Subject line (email, portal).
        #[arg(long)]
        subject: Option<String>,
        /// Who wrote it.
        #[arg(long, default_value = "commsctl")]
        by: String,
    },
    /// Approve a draft version: NAME@VERSION.
    Approve {
        target: String,
        /// Who approves (recorded with the time).
        #[arg(long)]
        by: String,
    },
    /// List the versions of a template and their state.
    Show { name: String },
}

/// What a provider or the renderer would refuse later, refused when the version is added: a bad
/// name, an empty body (Twilio refuses one), an email without a subject (SendGrid refuses one),
/// and a body or subject that is not valid template syntax (it could never render).
fn check(name: &str, channel: &str, subject: Option<&str>, body: &str) -> anyhow::Result<()> {
    if !comms_domain::sequences::valid_name(name) {
        bail!("--name: expected [a-z0-9_.-], 1 to 100 characters; found {name:?}");
    }
    if body.trim().is_empty() {
        bail!("--file: the body is empty; a message needs words to send");
    }
    let subject = subject.filter(|s| !s.trim().is_empty());
    if channel == "email" && subject.is_none() {
        bail!("--subject is required for an email template (providers refuse email without one)");
    }
    let env = minijinja::Environment::new();
    for (what, source) in [("--file", Some(body)), ("--subject", subject)] {
        if let Some(source) = source {
            env.template_from_str(source).map_err(|error| {
                let detail = error.detail().map(|d| format!(": {d}")).unwrap_or_default();
                anyhow::anyhow!(
                    "{what}: not valid template syntax ({}{detail})",
                    error.kind()
                )
            })?;
        }
    }
    Ok(())
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Version {
    version: i32,
    channel: String,
    state: String,
    subject: Option<String>,
    body: String,
    created_by: String,
    approved_by: Option<String>,
    approved_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn run(pool: &PgPool, command: TemplatesCommand, json: bool) -> anyhow::Result<()> {
    match command {
        TemplatesCommand::Add {
            name,
            channel,
            file,
            subject,
            by,
        } => {
            let body = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            if !["sms", "email", "portal"].contains(&channel.as_str()) {
                bail!("--channel must be sms, email or portal");
            }
            check(&name, &channel, subject.as_deref(), &body)?;
            let version: i32 = sqlx::query_scalar(
                "INSERT INTO comms.templates (name, version, channel, subject, body, created_by)
                 SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5
                 FROM comms.templates WHERE name = $1
                 RETURNING version",
            )
            .bind(&name)
            .bind(&channel)
            .bind(&subject)
            .bind(&body)
            .bind(&by)
            .fetch_one(pool)
            .await
            .context("creating the template version (names are [a-z0-9_.-], up to 100)")?;
            report(
                json,
                serde_json::json!({"name": name, "version": version, "state": "draft"}),
                &format!(
                    "created {name}@{version} (draft); approve it with: commsctl templates approve {name}@{version} --by OWNER"
                ),
            );
        }
        TemplatesCommand::Approve { target, by } => {
            let (name, version) = target
                .split_once('@')
                .and_then(|(n, v)| v.parse::<i32>().ok().map(|v| (n.to_string(), v)))
                .context("expected NAME@VERSION, e.g. welcome@2")?;
            let done = sqlx::query(
                "UPDATE comms.templates SET state = 'approved', approved_by = $3, approved_at = now()
                 WHERE name = $1 AND version = $2 AND state = 'draft'",
            )
            .bind(&name)
            .bind(version)
            .bind(&by)
            .execute(pool)
            .await?;
            if done.rows_affected() == 0 {
                bail!("{name}@{version} is not a draft (missing, or already approved or retired)");
            }
            report(
                json,
                serde_json::json!({"name": name, "version": version, "state": "approved", "approved_by": by}),
                &format!("approved {name}@{version} by {by}"),
            );
        }
        TemplatesCommand::Show { name } => {
            let versions: Vec<Version> = sqlx::query_as(
                "SELECT version, channel, state, subject, body, created_by, approved_by, approved_at
                 FROM comms.templates WHERE name = $1 ORDER BY version",
            )
            .bind(&name)
            .fetch_all(pool)
            .await?;
            if versions.is_empty() {
                bail!("no template named {name}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&versions)?);
            } else {
                println!("VERSION  CHANNEL STATE     APPROVED BY      APPROVED AT");
                for v in versions {
                    println!(
                        "{:<8} {:<7} {:<9} {:<16} {}",
                        v.version,
                        v.channel,
                        v.state,
                        v.approved_by.unwrap_or_else(|| "-".into()),
                        v.approved_at.map_or_else(|| "-".into(), |t| t.to_rfc3339())
                    );
                }
            }
        }
    }
    Ok(())
}

fn report(json: bool, value: serde_json::Value, text: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}
