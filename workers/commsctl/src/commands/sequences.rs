//! `commsctl sequences`: add a draft version from a file, activate it (the escalation owner's
//! approval), list, show, roll back, enrol a contact, stop an enrolment. The rules are
//! `comms_domain::sequences`, the same the gateway and the worker apply (docs/sequences.md).

use anyhow::{Context, bail};
use clap::Subcommand;
use comms_domain::contract::RecordType;
use comms_domain::sequences::enrol::{self, EnrolmentRecord, EnrolmentRequest};
use comms_domain::sequences::{definition::Definition, parse_ref, rollback, store};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum SequencesCommand {
    /// Add a new draft version of a sequence from a JSON definition file.
    Add {
        #[arg(long)]
        file: std::path::PathBuf,
        /// Who wrote it (defaults to $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Activate a draft NAME@VERSION: the escalation owner's (or a delegate's) approval, audited.
    /// Refused without an escalation owner and a rollback path.
    Activate {
        target: String,
        #[arg(long)]
        by: String,
    },
    /// Every version and its state.
    List,
    /// One version: its steps, rollback path, result of a rollback, enrolments by state.
    Show { target: String },
    /// Apply NAME@VERSION's rollback path to everyone in flight (idempotent).
    Rollback {
        target: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
    },
    /// Enrol a contact in a sequence's active version (a no-op if already enrolled).
    Enrol {
        #[arg(long)]
        contact: Uuid,
        /// The sequence's name.
        #[arg(long)]
        sequence: String,
        /// The record: TYPE:ID, e.g. lead:123e4567-e89b-12d3-a456-426614174000.
        #[arg(long)]
        record: String,
        #[arg(long)]
        owner: String,
        #[arg(long, default_value = "commsctl")]
        source: String,
    },
    /// An owner's manual stop of one enrolment.
    Stop {
        enrolment: Uuid,
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
    },
}

fn target(text: &str) -> anyhow::Result<(String, i32)> {
    parse_ref(text).context("expected NAME@VERSION, e.g. winback@2")
}

fn print(json: bool, value: &impl serde::Serialize, text: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{text}");
    }
    Ok(())
}

pub async fn run(pool: &PgPool, command: SequencesCommand, json: bool) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    match command {
        SequencesCommand::Add { file, by } => {
            let raw =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let definition = Definition::parse(&raw).map_err(anyhow::Error::msg)?;
            let by = super::pause::operator(by);
            let version = store::add(pool, &definition, &by).await?;
            let name = &definition.file.name;
            let value = serde_json::json!({ "name": name, "version": version, "state": "draft" });
            print(
                json,
                &value,
                &format!(
                    "added {name}@{version} (draft); the escalation owner activates it with: commsctl sequences activate {name}@{version} --by OWNER"
                ),
            )
        }
        SequencesCommand::Activate { target: t, by } => {
            let (name, version) = target(&t)?;
            let row = store::activate(pool, (&name, version), &by, now).await?;
            print(json, &row, &format!("activated {name}@{version} by {by}"))
        }
        SequencesCommand::List => {
            let rows = store::list(pool).await?;
            if json {
                return print(json, &rows, "");
            }
            println!(
                "SEQUENCE                 STATE        AUDIENCE         ESCALATION OWNER  ROLLBACK"
            );
            for r in rows {
                println!(
                    "{:<24} {:<12} {:<16} {:<17} {}",
                    format!("{}@{}", r.name, r.version),
                    r.state,
                    r.audience,
                    r.escalation_owner.as_deref().unwrap_or("-"),
                    r.rollback.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        SequencesCommand::Show { target: t } => {
            let (name, version) = target(&t)?;
            let view = store::show(pool, (&name, version)).await?;
            if json {
                return print(json, &view, "");
            }
            let s = &view.sequence;
            println!(
                "{}@{}  {}  audience {}",
                s.name, s.version, s.state, s.audience
            );
            println!(
                "escalation owner: {}",
                s.escalation_owner
                    .as_deref()
                    .unwrap_or("- (required to activate)")
            );
            let correction = s
                .correction_template
                .as_ref()
                .map(|t| format!(" + correction {t}@{}", s.correction_version.unwrap_or(0)))
                .unwrap_or_default();
            println!(
                "rollback path: {}{correction}",
                s.rollback.as_deref().unwrap_or("- (required to activate)")
            );
            println!("exits: {}, stopped, rolled_back", s.exit_on.join(", "));
            for step in &view.steps {
                let when = match (step.delay_seconds, step.local_time) {
                    (_, Some(at)) => format!("at {} local", at.format("%H:%M")),
                    (d, None) => format!(
                        "after {}",
                        humantime::format_duration(std::time::Duration::from_secs(
                            u64::try_from(d.unwrap_or(0)).unwrap_or(0)
                        ),)
                    ),
                };
                println!(
                    "  {}. {:<5} {:<14} {}@{}  {when}",
                    step.position,
                    step.channel,
                    step.kind,
                    step.template_name,
                    step.template_version
                );
            }
            if let (Some(by), Some(at)) = (&s.rolled_back_by, s.rolled_back_at) {
                println!(
                    "rolled back {} by {by}: {} — {} cancelled, {} corrections sent",
                    at.to_rfc3339(),
                    s.rollback_reason.as_deref().unwrap_or_default(),
                    s.rollback_cancelled.unwrap_or(0),
                    s.corrections_sent
                );
            }
            let counts: Vec<String> = view
                .enrolments
                .iter()
                .map(|(state, n)| format!("{n} {state}"))
                .collect();
            println!(
                "enrolments: {}",
                if counts.is_empty() {
                    "none".into()
                } else {
                    counts.join(", ")
                }
            );
            let escalated: Vec<String> = view
                .escalations
                .iter()
                .map(|(outcome, n)| format!("{n} {outcome}"))
                .collect();
            if !escalated.is_empty() {
                println!(
                    "steps escalated to {}: {}",
                    view.sequence.escalation_owner.as_deref().unwrap_or("-"),
                    escalated.join(", ")
                );
            }
            Ok(())
        }
        SequencesCommand::Rollback {
            target: t,
            by,
            reason,
        } => {
            let (name, version) = target(&t)?;
            let done = rollback::rollback(pool, (&name, version), &by, &reason, now).await?;
            let text = if done.changed {
                format!(
                    "rolled back {name}@{version}: {} enrolments cancelled, {} unsent step messages cancelled, {} corrections to send; task for the escalation owner",
                    done.cancelled, done.messages_cancelled, done.corrections_due
                )
            } else {
                format!(
                    "{name}@{version} was already rolled back ({} cancelled, {} corrections sent); nothing changed",
                    done.cancelled, done.corrections_sent
                )
            };
            print(json, &done, &text)
        }
        SequencesCommand::Enrol {
            contact,
            sequence,
            record,
            owner,
            source,
        } => {
            let Some((kind, id)) = record.split_once(':') else {
                bail!("--record: expected TYPE:ID, e.g. lead:123e4567-e89b-12d3-a456-426614174000");
            };
            let record = EnrolmentRecord {
                record_type: kind
                    .parse::<RecordType>()
                    .map_err(|e| anyhow::anyhow!("--record: {e}"))?,
                id: id.parse().context("--record: the id is not a UUID")?,
            };
            let request = EnrolmentRequest {
                schema: None,
                contact_id: contact,
                sequence,
                record,
                owner,
                source,
            };
            let enrolled = enrol::enrol(pool, &request, now).await?;
            let text = if enrolled.created {
                format!(
                    "enrolled in {}@{}: enrolment {} (step 1 due {})",
                    enrolled.sequence,
                    enrolled.version,
                    enrolled.enrolment_id,
                    enrolled
                        .next_due_at
                        .map_or_else(|| "-".into(), |t| t.to_rfc3339())
                )
            } else {
                format!(
                    "already enrolled: enrolment {} ({}); nothing changed",
                    enrolled.enrolment_id, enrolled.state
                )
            };
            print(json, &enrolled, &text)
        }
        SequencesCommand::Stop {
            enrolment,
            by,
            reason,
        } => {
            let stopped = enrol::stop(pool, enrolment, &by, &reason, now).await?;
            let value = serde_json::json!({ "enrolment": enrolment, "stopped": stopped });
            let text = if stopped {
                format!("stopped enrolment {enrolment}")
            } else {
                format!("enrolment {enrolment} had already ended; nothing changed")
            };
            print(json, &value, &text)
        }
    }
}
