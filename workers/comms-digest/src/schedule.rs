//! The built-in schedule (`digest.schedule`, a cron expression in UTC; off when empty): at each
//! occurrence, one `digest.report` job is enqueued per period that has closed and has no digest
//! yet.
//!
//! Time is the project clock's: the schedule looks every second whether an occurrence fell
//! between its last look and the clock's now (occurrences missed while the worker was down, or
//! several passed between two looks, are handled once). Each handled occurrence is a row in
//! `comms.digest_schedule_runs` with how many jobs it enqueued, written in the transaction that
//! publishes them: with several replicas only the first one to claim an occurrence enqueues, and a
//! failed publish leaves the occurrence unclaimed to be tried again.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_runtime::amqp::{Outgoing, Publisher};
use comms_runtime::clock::Clock;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use croner::Cron;
use uuid::Uuid;

use crate::job::{self, ReportJob};

/// Parses the schedule: `None` when it is off, an error naming the problem when it is invalid.
pub fn parse(expression: &str) -> Result<Option<Cron>, String> {
    let expression = expression.trim();
    if expression.is_empty() {
        return Ok(None);
    }
    Cron::from_str(expression)
        .map(Some)
        .map_err(|e| format!("digest.schedule {expression:?}: {e}"))
}

/// The first occurrence of `cron` in `(after, now]`, if any.
pub fn due(cron: &Cron, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after, false)
        .ok()
        .filter(|next| *next <= now)
}

/// Handles `occurrence` at `now`: claims it, enqueues one job per closed period without a digest,
/// and records how many. `None` when another replica already handled the occurrence.
pub async fn enqueue_due(
    runtime: &Runtime,
    publisher: &Publisher,
    occurrence: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<usize>, anyhow::Error> {
    let mut tx = runtime.pool.begin().await?;
    let claimed = sqlx::query(
        "INSERT INTO comms.digest_schedule_runs (occurrence, enqueued, ran_at) VALUES ($1, 0, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(occurrence)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(None);
    }
    let periods: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT p.id, r.owner FROM comms.report_periods p JOIN comms.reports r ON r.id = p.report_id
         WHERE (p.state = 'closed' OR (p.state = 'open' AND p.ends_on < $1::date))
           AND NOT EXISTS (SELECT 1 FROM comms.digests d WHERE d.period_id = p.id)
         ORDER BY p.ends_on, p.id",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let exchange = runtime.topology.digest_exchange();
    for (period, owner) in &periods {
        let job = ReportJob {
            schema: None,
            report_period_id: *period,
            owner: owner.clone(),
            source: "schedule".into(),
            requested_at: now,
        };
        let body = serde_json::to_vec(&job)?;
        publisher
            .publish(Outgoing {
                exchange: &exchange,
                routing_key: job::REPORT,
                body: &body,
                ..Outgoing::default()
            })
            .await?;
    }
    sqlx::query("UPDATE comms.digest_schedule_runs SET enqueued = $2 WHERE occurrence = $1")
        .bind(occurrence)
        .bind(i32::try_from(periods.len()).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(periods.len()))
}

/// Looks every second (by `clock`, from `since`) for an occurrence until `shutdown`.
pub async fn run(
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    since: DateTime<Utc>,
    shutdown: Shutdown,
) {
    let Ok(Some(cron)) = parse(&runtime.settings.digest.schedule) else {
        return; // off (an invalid schedule was refused at start)
    };
    let mut last = since;
    let mut publisher: Option<(lapin::Connection, Publisher)> = None;
    loop {
        let now = clock.now();
        if let Some(occurrence) = due(&cron, last, now) {
            if publisher.as_ref().is_none_or(|(_, p)| !p.is_usable()) {
                publisher = crate::batch::flush::connect(&runtime).await.ok();
            }
            let result = match publisher.as_ref() {
                Some((_, p)) => enqueue_due(&runtime, p, occurrence, now).await,
                None => Err(anyhow::anyhow!("broker unavailable")),
            };
            match result {
                Ok(enqueued) => {
                    tracing::info!(%occurrence, periods = enqueued, "digest schedule occurrence handled");
                    last = now;
                }
                Err(error) => {
                    tracing::warn!(%error, "scheduled digest jobs not enqueued; trying again");
                    publisher = None;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn off_by_default_and_invalid_is_refused() {
        assert!(parse("").expect("empty is off").is_none());
        assert!(parse("every monday").is_err());
    }

    #[test]
    fn an_occurrence_between_checks_is_due_once() {
        let cron = parse("0 6 * * *").expect("valid").expect("on");
        assert_eq!(
            due(
                &cron,
                utc("2025-03-01T05:00:00Z"),
                utc("2025-03-01T05:59:59Z")
            ),
            None
        );
        assert_eq!(
            due(
                &cron,
                utc("2025-03-01T05:59:59Z"),
                utc("2025-03-01T06:00:00Z")
            ),
            Some(utc("2025-03-01T06:00:00Z"))
        );
        assert_eq!(
            due(
                &cron,
                utc("2025-03-01T06:00:00Z"),
                utc("2025-03-01T12:00:00Z")
            ),
            None
        );
    }
}
