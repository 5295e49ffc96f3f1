//! `commsctl report outcomes`: the five numbers an account owner is judged on, per owner, for an
//! optional client and period, from the records themselves (no separate counters to drift):
//!
//! - **response time**: a reply's arrival (`internal.inbound_messages.received_at`) to the owner's
//!   answer (`responded_at`, set when the reply task is closed), for replies to the owner's messages;
//! - **approval time**: an approval request to its decision (`comms.message_approvals`);
//! - **report views**: signed report views (`comms.digest_views`) of the owner's digests;
//! - **review-request outcomes**: `review` outcomes by result, and the mean rating given;
//! - **booked results**: meetings and sales, value by currency, and what they are attributed to.
//!
//! Each figure is filtered by the time it happened (`from` inclusive, `to` exclusive).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Which figures: one owner, one client, a period (all optional).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub owner: Option<String>,
    pub client: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A duration figure: how many, how many done, median and mean seconds of those done.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timing {
    pub count: i64,
    pub done: i64,
    pub median_seconds: Option<f64>,
    pub mean_seconds: Option<f64>,
}

/// Booked results.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BookedFigures {
    pub meetings: i64,
    pub sales: i64,
    /// Sum of values by currency.
    pub value: BTreeMap<String, f64>,
    /// Booked results attributed to each sequence.
    pub by_sequence: BTreeMap<String, i64>,
    /// Booked results attributed to a message.
    pub attributed_to_messages: i64,
}

/// Review-request outcomes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReviewFigures {
    pub clicked: i64,
    pub reviewed: i64,
    pub declined: i64,
    pub mean_rating: Option<f64>,
}

/// One owner's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OwnerFigures {
    pub owner: String,
    pub response: Timing,
    pub approval: Timing,
    pub report_views: i64,
    pub reviews: ReviewFigures,
    pub booked: BookedFigures,
}

type TimingRow = (String, i64, i64, Option<f64>, Option<f64>);

/// The figures of every owner the filter matches, by owner.
pub async fn outcomes(pool: &PgPool, filter: &Filter) -> Result<Vec<OwnerFigures>, sqlx::Error> {
    let mut owners: BTreeMap<String, OwnerFigures> = BTreeMap::new();
    let (owner, client, from, to) = (&filter.owner, filter.client, filter.from, filter.to);
    let responses: Vec<TimingRow> = sqlx::query_as(
        "SELECT m.owner, count(*), count(i.responded_at),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM i.responded_at - i.received_at)::float8),
                avg(extract(epoch FROM i.responded_at - i.received_at)::float8)
         FROM internal.inbound_messages i JOIN comms.messages m ON m.id = i.message_id
         WHERE i.classification = 'reply'
           AND ($1::text IS NULL OR m.owner = $1) AND ($2::uuid IS NULL OR m.client_id = $2)
           AND ($3::timestamptz IS NULL OR i.received_at >= $3)
           AND ($4::timestamptz IS NULL OR i.received_at < $4)
         GROUP BY m.owner",
    )
    .bind(owner)
    .bind(client)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    for (o, count, done, median, mean) in responses {
        entry(&mut owners, &o).response = Timing {
            count,
            done,
            median_seconds: median,
            mean_seconds: mean,
        };
    }
    let approvals: Vec<TimingRow> = sqlx::query_as(
        "SELECT m.owner, count(*), count(*),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.decided_at - a.requested_at)::float8),
                avg(extract(epoch FROM a.decided_at - a.requested_at)::float8)
         FROM comms.message_approvals a JOIN comms.messages m ON m.id = a.message_id
         WHERE a.decision IN ('approved', 'rejected')
           AND ($1::text IS NULL OR m.owner = $1) AND ($2::uuid IS NULL OR m.client_id = $2)
           AND ($3::timestamptz IS NULL OR a.decided_at >= $3)
           AND ($4::timestamptz IS NULL OR a.decided_at < $4)
         GROUP BY m.owner",
    )
    .bind(owner)
    .bind(client)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    for (o, count, done, median, mean) in approvals {
        entry(&mut owners, &o).approval = Timing {
            count,
            done,
            median_seconds: median,
            mean_seconds: mean,
        };
    }
    let views: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.owner, count(*) FROM comms.digest_views v JOIN comms.digests d ON d.id = v.digest_id
         WHERE ($1::text IS NULL OR d.owner = $1) AND ($2::uuid IS NULL OR d.client_id = $2)
           AND ($3::timestamptz IS NULL OR v.viewed_at >= $3)
           AND ($4::timestamptz IS NULL OR v.viewed_at < $4)
         GROUP BY d.owner",
    )
    .bind(owner)
    .bind(client)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    for (o, n) in views {
        entry(&mut owners, &o).report_views = n;
    }
    let rows: Vec<OutcomeRow> = sqlx::query_as(
        "SELECT owner, type, booked_kind, value::float8 AS value, currency, review_result,
                rating::float8 AS rating, sequence_name, message_id IS NOT NULL AS has_message
         FROM comms.outcomes
         WHERE ($1::text IS NULL OR owner = $1) AND ($2::uuid IS NULL OR client_id = $2)
           AND ($3::timestamptz IS NULL OR occurred_at >= $3)
           AND ($4::timestamptz IS NULL OR occurred_at < $4)
         ORDER BY owner, id",
    )
    .bind(owner)
    .bind(client)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let mut ratings: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for row in rows {
        let figures = entry(&mut owners, &row.owner);
        match (row.outcome_type.as_str(), row.booked_kind.as_deref()) {
            ("booked", kind) => {
                let b = &mut figures.booked;
                if kind == Some("sale") {
                    b.sales += 1;
                } else {
                    b.meetings += 1;
                }
                if let (Some(value), Some(currency)) = (row.value, &row.currency) {
                    *b.value.entry(currency.clone()).or_default() += value;
                }
                if let Some(sequence) = &row.sequence_name {
                    *b.by_sequence.entry(sequence.clone()).or_default() += 1;
                }
                b.attributed_to_messages += i64::from(row.has_message);
            }
            _ => {
                let r = &mut figures.reviews;
                match row.review_result.as_deref() {
                    Some("clicked") => r.clicked += 1,
                    Some("reviewed") => r.reviewed += 1,
                    _ => r.declined += 1,
                }
                if let Some(rating) = row.rating {
                    ratings.entry(row.owner.clone()).or_default().push(rating);
                }
            }
        }
    }
    for (o, given) in ratings {
        let mean = given.iter().sum::<f64>() / given.len() as f64;
        entry(&mut owners, &o).reviews.mean_rating = Some(mean);
    }
    Ok(owners.into_values().collect())
}

fn entry<'a>(owners: &'a mut BTreeMap<String, OwnerFigures>, owner: &str) -> &'a mut OwnerFigures {
    owners
        .entry(owner.to_string())
        .or_insert_with(|| OwnerFigures {
            owner: owner.to_string(),
            ..OwnerFigures::default()
        })
}

#[derive(sqlx::FromRow)]
struct OutcomeRow {
    owner: String,
    #[sqlx(rename = "type")]
    outcome_type: String,
    booked_kind: Option<String>,
    value: Option<f64>,
    currency: Option<String>,
    review_result: Option<String>,
    rating: Option<f64>,
    sequence_name: Option<String>,
    has_message: bool,
}
