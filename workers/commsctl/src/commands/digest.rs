//! `commsctl digest build|show|list|approve|release`: the operator surface of report digests
//! (docs/digests.md). `build` publishes a `digest.report` job exactly as an upstream app would;
//! the digest worker does the work. `approve` and `release` record the owner's decision, then
//! enqueue the job that publishes (or builds again).

use anyhow::{Context, bail};
use clap::Subcommand;
use comms_domain::digests::{self, decide, view};
use comms_runtime::amqp::Publisher;
use comms_runtime::settings::Settings;
use comms_runtime::topology::Topology;
use sqlx::PgPool;
use uuid::Uuid;

use super::approvals::{actor, human};

#[derive(Debug, Subcommand)]
pub enum DigestCommand {
    /// Ask the digest worker to build (or publish, once approved) the digest of a report period.
    Build {
        #[arg(long)]
        period: Uuid,
    },
    /// One digest (by digest id, or a period id for its latest revision): content, approval,
    /// sends and views.
    Show { reference: Uuid },
    /// Digests, newest first.
    List {
        /// Only digests in this state.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(view::STATES))]
        state: Option<String>,
    },
    /// Approve a digest waiting for approval; it is then published to its recipients.
    Approve {
        digest: Uuid,
        /// Who approves (defaults to $USER): the digest's owner or a delegate they named.
        #[arg(long = "as")]
        actor: Option<String>,
    },
    /// Release a client's held digests (after an unverified revenue figure); they build again.
    Release {
        client: Uuid,
        /// Who releases (defaults to $USER): the owner or a delegate they named.
        #[arg(long = "as")]
        actor: Option<String>,
    },
}

pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    command: DigestCommand,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        DigestCommand::Build { period } => {
            let owner: Option<String> = sqlx::query_scalar(
                "SELECT r.owner FROM comms.report_periods p JOIN comms.reports r ON r.id = p.report_id
                 WHERE p.id = $1",
            )
            .bind(period)
            .fetch_optional(pool)
            .await?;
            let Some(owner) = owner else {
                bail!("no report period {period}");
            };
            enqueue(settings, &[period], &owner).await?;
            print(json, serde_json::json!({"enqueued": [period]}), || {
                format!(
                    "build of period {period} enqueued; follow it with: commsctl digest show {period}"
                )
            })
        }
        DigestCommand::Show { reference } => {
            let Some(found) = view::find(pool, reference).await? else {
                bail!("no digest or report period {reference}");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                print_view(&found);
            }
            Ok(())
        }
        DigestCommand::List { state } => {
            let digests = view::list(pool, state.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&digests)?);
                return Ok(());
            }
            println!("{:<36}  {:<18}  REV  CLIENT / REPORT", "DIGEST", "STATE");
            for d in &digests {
                println!(
                    "{:<36}  {:<18}  {:>3}  {} / {}",
                    d.id, d.state, d.revision, d.client_name, d.report_title
                );
            }
            Ok(())
        }
        DigestCommand::Approve { digest, actor: who } => {
            let approval = decide::approve(pool, digest, &actor(who)).await?;
            enqueue(settings, &[approval.period_id], &approval.approved_by).await?;
            print(json, serde_json::to_value(&approval)?, || {
                format!(
                    "approved digest {digest} after {}; it is being published",
                    human(approval.approval_seconds)
                )
            })
        }
        DigestCommand::Release { client, actor: who } => {
            let who = actor(who);
            let periods = decide::release(pool, client, &who).await?;
            enqueue(settings, &periods, &who).await?;
            print(json, serde_json::json!({"enqueued": periods}), || {
                format!(
                    "released client {client}; {} period(s) build again",
                    periods.len()
                )
            })
        }
    }
}

fn print(
    json: bool,
    value: serde_json::Value,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
    Ok(())
}

/// Publishes one `digest.report` job per period (source `commsctl`).
async fn enqueue(settings: &Settings, periods: &[Uuid], owner: &str) -> anyhow::Result<()> {
    if periods.is_empty() {
        return Ok(());
    }
    let topology = Topology::new(settings.amqp.namespace.clone());
    let connection = comms_runtime::amqp::connect(&settings.amqp, "commsctl")
        .await
        .context("cannot reach RabbitMQ (is it running? `make services`)")?;
    let publisher = Publisher::open(&connection).await?;
    topology.declare(publisher.channel()).await?;
    for period in periods {
        digests::enqueue_build(
            &publisher,
            &topology,
            *period,
            owner,
            "commsctl",
            chrono::Utc::now(),
        )
        .await
        .context("the broker did not accept the digest job")?;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

fn print_view(found: &view::DigestView) {
    let d = &found.digest;
    println!(
        "digest {} (period {}, revision {})",
        d.id, d.period_id, d.revision
    );
    println!(
        "  {} / {}, owner {}",
        d.client_name, d.report_title, d.owner
    );
    println!("  state: {}", d.state);
    if let Some(reason) = &d.blocked_reason {
        println!("  blocked: {reason}");
    }
    if d.stale_caveat {
        println!("  carries the stale-data caveat");
    }
    match (&d.approved_by, d.approved_at) {
        (Some(by), Some(at)) => println!(
            "  approved by {by}{} at {at} (after {})",
            d.on_behalf_of
                .as_deref()
                .map(|o| format!(" for {o}"))
                .unwrap_or_default(),
            human(d.approval_seconds.unwrap_or(0.0))
        ),
        _ => println!("  not approved"),
    }
    for (channel, subject, body) in [
        ("email", &d.email_subject, &d.email_body),
        ("portal", &d.portal_subject, &d.portal_body),
    ] {
        if let Some(body) = body {
            println!("  --- {channel}: {}", subject.as_deref().unwrap_or(""));
            for line in body.lines() {
                println!("  | {line}");
            }
        }
    }
    println!("  sends: {}", found.sends.len());
    for s in &found.sends {
        println!(
            "    {}  {}",
            s.idempotency_key,
            s.delivery_state.as_deref().unwrap_or("not recorded yet")
        );
    }
    let v = &found.views;
    match (v.first_at, v.last_at) {
        (Some(first), Some(last)) => println!(
            "  viewed {} time(s) by {} contact(s), first {first}, last {last}",
            v.total, v.contacts
        ),
        _ => println!("  not viewed yet"),
    }
}
