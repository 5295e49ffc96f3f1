//! The five figures as Prometheus metrics (`comms_figures_*`), read from the same records as
//! `commsctl report outcomes` rather than counted where each event happens.
//!
//! Why from the records: the events behind these figures happen in many processes, and some in
//! none that is scraped — a reply task closed with `commsctl tasks done`, an approval decided with
//! `commsctl approvals`, an outcome posted to the gateway or published on AMQP. A counter bumped
//! where the event happens would miss every CLI action; the records miss nothing, so metrics and
//! report cannot disagree. `comms-sequences` refreshes them every `sequences.figures_interval`;
//! every scrape returns the last refresh (`comms_figures_refreshed_timestamp_seconds` says when).
//!
//! Labels are closed vocabularies only — channel, decision, review result, booked kind, what a
//! result is attributed to, first/repeat view — plus the ISO 4217 currency of booked value (a
//! bounded list, a handful in practice). Never an owner or a client: their number grows with the
//! business, and the per-owner and per-client figures are the report's (docs/outcomes.md).
//! Every replica of `comms-sequences` exposes the same values: aggregate with `max`, not `sum`.

use std::sync::{LazyLock, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use sqlx::PgPool;

/// Upper bounds (seconds) of the response and approval time buckets: a minute to a week.
const BUCKETS: [f64; 11] = [
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 28_800.0, 86_400.0, 172_800.0, 604_800.0,
];

struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    kind: MetricType,
}

const RESPONSE: Family = Family {
    name: "comms_figures_response_seconds",
    help: "Replies answered: seconds from a reply's arrival to the owner's answer (its task closed), by channel",
    labels: &["channel"],
    kind: MetricType::HISTOGRAM,
};
const UNANSWERED: Family = Family {
    name: "comms_figures_replies_unanswered",
    help: "Replies whose task is not closed yet, by channel",
    labels: &["channel"],
    kind: MetricType::GAUGE,
};
const APPROVAL: Family = Family {
    name: "comms_figures_approval_seconds",
    help: "Approval decisions: seconds from request to decision, by channel and decision",
    labels: &["channel", "decision"],
    kind: MetricType::HISTOGRAM,
};
const VIEWS: Family = Family {
    name: "comms_figures_report_views_total",
    help: "Report-view link openings recorded, first (a contact's first view of a digest) or repeat",
    labels: &["view"],
    kind: MetricType::COUNTER,
};
const REVIEWS: Family = Family {
    name: "comms_figures_review_outcomes_total",
    help: "Review-request outcomes recorded, by result and the channel of the request",
    labels: &["result", "channel"],
    kind: MetricType::COUNTER,
};
const BOOKED: Family = Family {
    name: "comms_figures_booked_total",
    help: "Booked results recorded, by kind and what they are attributed to (message, sequence, record)",
    labels: &["kind", "attributed"],
    kind: MetricType::COUNTER,
};
const VALUE: Family = Family {
    name: "comms_figures_booked_value_total",
    help: "Value of booked results recorded, by currency",
    labels: &["currency"],
    kind: MetricType::COUNTER,
};
const REFRESHED: Family = Family {
    name: "comms_figures_refreshed_timestamp_seconds",
    help: "When the figures were last read from the database (Unix seconds)",
    labels: &[],
    kind: MetricType::GAUGE,
};

const FAMILIES: [&Family; 8] = [
    &RESPONSE,
    &UNANSWERED,
    &APPROVAL,
    &VIEWS,
    &REVIEWS,
    &BOOKED,
    &VALUE,
    &REFRESHED,
];

/// Rows of `(labels, value)`.
type Rows = Vec<(Vec<String>, f64)>;

const RESPONSE_SQL: &str = "SELECT ARRAY[m.channel] AS labels,
        extract(epoch FROM i.responded_at - i.received_at)::float8 AS d
    FROM internal.inbound_messages i JOIN comms.messages m ON m.id = i.message_id
    WHERE i.classification = 'reply' AND i.responded_at IS NOT NULL";
const APPROVAL_SQL: &str = "SELECT ARRAY[m.channel, a.decision] AS labels,
        extract(epoch FROM a.decided_at - a.requested_at)::float8 AS d
    FROM comms.message_approvals a JOIN comms.messages m ON m.id = a.message_id
    WHERE a.decision IN ('approved', 'rejected', 'expired')";
const UNANSWERED_SQL: &str = "SELECT ARRAY[m.channel], count(*)::float8
    FROM internal.inbound_messages i JOIN comms.messages m ON m.id = i.message_id
    WHERE i.classification = 'reply' AND i.responded_at IS NULL GROUP BY m.channel";
const VIEWS_SQL: &str =
    "SELECT ARRAY[CASE WHEN first THEN 'first' ELSE 'repeat' END], count(*)::float8
    FROM comms.digest_views GROUP BY first";
const REVIEWS_SQL: &str = "SELECT ARRAY[review_result, COALESCE(channel, 'none')], count(*)::float8
    FROM comms.outcomes WHERE type = 'review' GROUP BY review_result, channel";
const BOOKED_SQL: &str = "SELECT ARRAY[booked_kind, CASE WHEN message_id IS NOT NULL THEN 'message'
            WHEN enrolment_id IS NOT NULL OR sequence_name IS NOT NULL THEN 'sequence'
            ELSE 'record' END] AS labels, count(*)::float8
    FROM comms.outcomes WHERE type = 'booked' GROUP BY 1";
const VALUE_SQL: &str = "SELECT ARRAY[COALESCE(currency, 'none')], sum(value)::float8
    FROM comms.outcomes WHERE type = 'booked' AND value IS NOT NULL GROUP BY currency";

/// The last refresh, returned by every scrape.
static LATEST: LazyLock<Mutex<Vec<MetricFamily>>> = LazyLock::new(|| Mutex::new(Vec::new()));

struct Figures {
    descs: Vec<Desc>,
}

impl Collector for Figures {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        LATEST.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Registers the `comms_figures_*` collector (once; later calls do nothing). Only the process
/// that refreshes them calls it.
pub fn register() {
    static DONE: LazyLock<()> = LazyLock::new(|| {
        let descs = FAMILIES
            .iter()
            .filter_map(|f| {
                let labels = f.labels.iter().map(|l| (*l).to_string()).collect();
                Desc::new(f.name.into(), f.help.into(), labels, Default::default()).ok()
            })
            .collect();
        let _ = comms_runtime::metrics::registry().register(Box::new(Figures { descs }));
    });
    LazyLock::force(&DONE);
}

/// Reads every figure from the database and makes it what scrapes return.
pub async fn refresh(pool: &PgPool, now: chrono::DateTime<chrono::Utc>) -> Result<(), sqlx::Error> {
    let families = vec![
        histogram(&RESPONSE, histogram_rows(pool, RESPONSE_SQL).await?),
        simple(&UNANSWERED, rows(pool, UNANSWERED_SQL).await?),
        histogram(&APPROVAL, histogram_rows(pool, APPROVAL_SQL).await?),
        simple(&VIEWS, rows(pool, VIEWS_SQL).await?),
        simple(&REVIEWS, rows(pool, REVIEWS_SQL).await?),
        simple(&BOOKED, rows(pool, BOOKED_SQL).await?),
        simple(&VALUE, rows(pool, VALUE_SQL).await?),
        simple(&REFRESHED, vec![(Vec::new(), now.timestamp() as f64)]),
    ];
    if let Ok(mut latest) = LATEST.lock() {
        *latest = families;
    }
    Ok(())
}

async fn rows(pool: &PgPool, sql: &str) -> Result<Rows, sqlx::Error> {
    sqlx::query_as(sql).fetch_all(pool).await
}

/// Per label set: count, sum and the cumulative count of each bucket, of `sql`'s `(labels, d)`.
async fn histogram_rows(
    pool: &PgPool,
    sql: &str,
) -> Result<Vec<(Vec<String>, i64, f64, Vec<i64>)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "WITH x AS ({sql})
         SELECT labels, count(*), COALESCE(sum(d), 0)::float8,
                (SELECT array_agg(count ORDER BY le) FROM (
                     SELECT b.le, count(*) FILTER (WHERE y.d <= b.le) AS count
                     FROM x y CROSS JOIN unnest($1::float8[]) AS b(le)
                     WHERE y.labels = x.labels GROUP BY b.le) c)
         FROM x GROUP BY labels ORDER BY labels"
    ))
    .bind(BUCKETS.as_slice())
    .fetch_all(pool)
    .await
}

fn labelled(family: &Family, values: &[String]) -> proto::Metric {
    let mut metric = proto::Metric::default();
    let pairs = family
        .labels
        .iter()
        .zip(values)
        .map(|(name, value)| {
            let mut pair = proto::LabelPair::default();
            pair.set_name((*name).to_string());
            pair.set_value(value.clone());
            pair
        })
        .collect();
    metric.set_label(pairs);
    metric
}

fn family(family: &Family, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut out = MetricFamily::default();
    out.set_name(family.name.into());
    out.set_help(family.help.into());
    out.set_field_type(family.kind);
    out.set_metric(metrics);
    out
}

fn simple(f: &Family, rows: Rows) -> MetricFamily {
    let metrics = rows
        .into_iter()
        .map(|(labels, value)| {
            let mut metric = labelled(f, &labels);
            if f.kind == MetricType::COUNTER {
                let mut counter = proto::Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            } else {
                let mut gauge = proto::Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
            metric
        })
        .collect();
    family(f, metrics)
}

fn histogram(f: &Family, rows: Vec<(Vec<String>, i64, f64, Vec<i64>)>) -> MetricFamily {
    let count = |n: i64| u64::try_from(n).unwrap_or_default();
    let metrics = rows
        .into_iter()
        .map(|(labels, n, sum, cumulative)| {
            let mut metric = labelled(f, &labels);
            let mut histogram = proto::Histogram::default();
            histogram.set_sample_count(count(n));
            histogram.set_sample_sum(sum);
            let buckets = BUCKETS
                .iter()
                .zip(cumulative)
                .map(|(le, c)| {
                    let mut bucket = proto::Bucket::default();
                    bucket.set_upper_bound(*le);
                    bucket.set_cumulative_count(count(c));
                    bucket
                })
                .collect();
            histogram.set_bucket(buckets);
            metric.set_histogram(histogram);
            metric
        })
        .collect();
    family(f, metrics)
}
