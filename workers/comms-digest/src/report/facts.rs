//! What a digest may say, read from the platform records: the report, the client's name, the
//! notes marked `client` (internal notes are never even read), the period's communication
//! outcomes, and the figures that have a source.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// The period, its report and client.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Period {
    pub id: Uuid,
    pub state: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub report_id: Uuid,
    pub title: String,
    pub client_id: Uuid,
    pub client_name: String,
    pub client_owner: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Figure {
    pub label: String,
    pub value: String,
    pub kind: String,
    pub source: Option<String>,
    pub source_verified: bool,
    pub as_of: DateTime<Utc>,
}

/// Everything read for one build.
#[derive(Debug, Clone)]
pub struct Facts {
    pub period: Period,
    pub notes: Vec<String>,
    pub outcomes: serde_json::Value,
    /// Figures with a source (ROI and revenue ones verified, else they are in `unverified`).
    pub figures: Vec<Figure>,
    /// Labels of figures left out because they name no source.
    pub unsourced: Vec<String>,
    /// Labels of ROI or revenue figures whose source is missing or not verified.
    pub unverified: Vec<String>,
}

pub async fn period(pool: &PgPool, id: Uuid) -> Result<Option<Period>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.state, p.starts_on, p.ends_on, r.id AS report_id, r.title,
                c.id AS client_id, c.name AS client_name, c.owner AS client_owner
         FROM comms.report_periods p
         JOIN comms.reports r ON r.id = p.report_id
         JOIN comms.clients c ON c.id = r.client_id
         WHERE p.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn gather(pool: &PgPool, period: Period) -> Result<Facts, sqlx::Error> {
    // Only `client` notes are selected: an internal note never enters the digest's memory.
    let notes: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM comms.report_notes
         WHERE report_id = $1 AND visibility = 'client' ORDER BY created_at, id",
    )
    .bind(period.report_id)
    .fetch_all(pool)
    .await?;
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT channel, delivery_state, count(*),
                count(*) FILTER (WHERE reply_state = 'replied'),
                count(*) FILTER (WHERE opt_out_state <> 'none')
         FROM comms.messages
         WHERE client_id = $1 AND kind <> 'report_digest'
           AND created_at >= $2::date AND created_at < ($3::date + 1)
         GROUP BY channel, delivery_state ORDER BY channel, delivery_state",
    )
    .bind(period.client_id)
    .bind(period.starts_on)
    .bind(period.ends_on)
    .fetch_all(pool)
    .await?;
    let (replies, opt_outs) = rows
        .iter()
        .fold((0, 0), |(r, o), row| (r + row.3, o + row.4));
    let outcomes = json!({
        "messages": rows.iter().map(|(channel, state, n, ..)| json!({
            "channel": channel, "state": state, "count": n,
        })).collect::<Vec<_>>(),
        "replies": replies,
        "opt_outs": opt_outs,
    });
    let all: Vec<Figure> = sqlx::query_as(
        "SELECT label, value, kind, source, source_verified, as_of FROM comms.report_figures
         WHERE period_id = $1 ORDER BY kind, label, id",
    )
    .bind(period.id)
    .fetch_all(pool)
    .await?;
    let mut facts = Facts {
        period,
        notes,
        outcomes,
        figures: Vec::new(),
        unsourced: Vec::new(),
        unverified: Vec::new(),
    };
    for figure in all {
        let sourced = figure
            .source
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty());
        let money = matches!(figure.kind.as_str(), "roi" | "revenue");
        if money && !(sourced && figure.source_verified) {
            facts.unverified.push(figure.label);
        } else if !sourced {
            facts.unsourced.push(figure.label);
        } else {
            facts.figures.push(figure);
        }
    }
    Ok(facts)
}

impl Facts {
    /// The oldest figure's time, if any figure is older than `bound` at `now`.
    pub fn stale_since(
        &self,
        now: DateTime<Utc>,
        bound: std::time::Duration,
    ) -> Option<DateTime<Utc>> {
        let bound = chrono::Duration::from_std(bound).unwrap_or(chrono::Duration::MAX);
        self.figures
            .iter()
            .map(|f| f.as_of)
            .min()
            .filter(|oldest| *oldest < now - bound)
    }

    /// The template variables: the same for every recipient, so one approval covers them all.
    /// `view_url` is the placeholder here; each send gets its own signed link in its place.
    pub fn vars(&self, as_of: DateTime<Utc>, caveat: Option<&str>) -> serde_json::Value {
        let p = &self.period;
        json!({
            "client": { "name": p.client_name },
            "report": { "title": p.title, "starts_on": p.starts_on, "ends_on": p.ends_on },
            "notes": self.notes,
            "outcomes": self.outcomes,
            "figures": self.figures,
            "as_of": as_of.format("%Y-%m-%d").to_string(),
            // Empty, not null, for fresh figures: `{{ caveat }}` must never print "none" to a
            // client, and `{% if caveat %}` reads the same either way.
            "caveat": caveat.unwrap_or_default(),
            "view_url": comms_domain::digests::link::PLACEHOLDER,
        })
    }
}
