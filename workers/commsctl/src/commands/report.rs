//! `commsctl report outcomes`: response time, approval time, report views, review-request
//! outcomes and booked results per owner (docs/outcomes.md). The figures are
//! `comms_domain::outcomes::report`'s.
//!
//! `commsctl report roi`: a client's booked-result summary for the portal, from sourced figures
//! only (`comms_domain::outcomes::roi`), published as a portal update that the sender checks for
//! portal safety and holds for the owner's approval.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use comms_domain::contract::parse_send_request;
use comms_domain::outcomes::report::{self, Filter, Timing};
use comms_domain::outcomes::roi;
use comms_runtime::settings::Settings;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The five outcome figures per owner, optionally for one owner, client and period.
    Outcomes {
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        client: Option<Uuid>,
        /// From this instant (RFC 3339), inclusive.
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Up to this instant (RFC 3339), exclusive.
        #[arg(long)]
        to: Option<DateTime<Utc>>,
    },
    /// A client's booked-result (ROI) summary for a period, sent to the portal of one of its
    /// contacts after the portal-safe check and the owner's approval.
    Roi {
        #[arg(long)]
        client: Uuid,
        /// The client contact who sees it in the portal.
        #[arg(long)]
        contact: Uuid,
        /// From this instant (RFC 3339), inclusive.
        #[arg(long)]
        from: DateTime<Utc>,
        /// Up to this instant (RFC 3339), exclusive.
        #[arg(long)]
        to: DateTime<Utc>,
        /// The approved portal template to render it with.
        #[arg(long, default_value = roi::DEFAULT_TEMPLATE)]
        template: String,
        /// Show the summary and the request without publishing it.
        #[arg(long)]
        dry_run: bool,
    },
}

fn timing(t: &Timing) -> String {
    match (t.median_seconds, t.mean_seconds) {
        (Some(median), Some(mean)) => format!(
            "{}/{} done, median {}, mean {}",
            t.done,
            t.count,
            super::approvals::human(median),
            super::approvals::human(mean)
        ),
        _ if t.count > 0 => format!("0/{} done", t.count),
        _ => "-".into(),
    }
}

pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    command: ReportCommand,
    json: bool,
) -> anyhow::Result<()> {
    let (owner, client, from, to) = match command {
        ReportCommand::Outcomes {
            owner,
            client,
            from,
            to,
        } => (owner, client, from, to),
        ReportCommand::Roi {
            client,
            contact,
            from,
            to,
            template,
            dry_run,
        } => {
            let summary = roi::summary(pool, client, from, to).await?;
            let request = summary.request(contact, &template);
            let key = request["idempotency_key"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !dry_run {
                let valid = parse_send_request(request.to_string().as_bytes())
                    .map_err(|e| anyhow::anyhow!("the summary's request is invalid: {e}"))?;
                super::send::publish(settings, &valid).await?;
            }
            if json {
                let shown = serde_json::json!({
                    "summary": summary, "request": request, "published": !dry_run
                });
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&summary.vars())?);
                if dry_run {
                    println!("not published (--dry-run)");
                } else {
                    println!(
                        "published {key}: the sender checks it for portal safety and holds it for \
                         {}'s approval (commsctl approvals); follow it with: commsctl message {key}",
                        summary.owner
                    );
                }
            }
            return Ok(());
        }
    };
    let figures = report::outcomes(
        pool,
        &Filter {
            owner,
            client,
            from,
            to,
        },
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(());
    }
    if figures.is_empty() {
        println!("no outcomes in this selection");
    }
    for f in figures {
        println!("{}", f.owner);
        println!("  response time   {}", timing(&f.response));
        println!("  approval time   {}", timing(&f.approval));
        println!("  report views    {}", f.report_views);
        let r = &f.reviews;
        let rating = r
            .mean_rating
            .map_or_else(String::new, |m| format!(", mean rating {m:.1}"));
        println!(
            "  reviews         {} clicked, {} reviewed, {} declined{rating}",
            r.clicked, r.reviewed, r.declined
        );
        let b = &f.booked;
        let value: Vec<String> = b.value.iter().map(|(c, v)| format!("{v:.2} {c}")).collect();
        let sequences: Vec<String> = b
            .by_sequence
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        println!(
            "  booked          {} meetings, {} sales{}{}",
            b.meetings,
            b.sales,
            if value.is_empty() {
                String::new()
            } else {
                format!(", {}", value.join(" + "))
            },
            if sequences.is_empty() {
                String::new()
            } else {
                format!("; from sequences: {}", sequences.join(", "))
            }
        );
    }
    Ok(())
}
