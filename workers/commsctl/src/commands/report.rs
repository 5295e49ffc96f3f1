//! `commsctl report outcomes`: response time, approval time, report views, review-request
//! outcomes and booked results per owner (docs/outcomes.md). The figures are
//! `comms_domain::outcomes::report`'s.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use comms_domain::outcomes::report::{self, Filter, Timing};
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

pub async fn run(pool: &PgPool, command: ReportCommand, json: bool) -> anyhow::Result<()> {
    let ReportCommand::Outcomes {
        owner,
        client,
        from,
        to,
    } = command;
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
