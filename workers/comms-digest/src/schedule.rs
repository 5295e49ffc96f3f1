//! The built-in schedule (`digest.schedule`, a cron expression in UTC; off when empty): at each
//! occurrence, one `digest.report` job is enqueued per period that has closed and has no digest
//! yet. Several replicas may enqueue the same period; a build is idempotent, so that is harmless.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_shared::amqp::{Outgoing, Publisher};
use comms_shared::clock::Clock;
use comms_shared::runtime::Runtime;
use comms_shared::shutdown::Shutdown;
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

/// Whether an occurrence of `cron` falls in `(after, now]`.
pub fn due(cron: &Cron, after: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    cron.find_next_occurrence(&after, false)
        .is_ok_and(|next| next <= now)
}

/// Enqueues one job per closed period without a digest; returns how many.
pub async fn enqueue_due(
    runtime: &Runtime,
    publisher: &Publisher,
    now: DateTime<Utc>,
) -> Result<usize, anyhow::Error> {
    let periods: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT p.id, r.owner FROM comms.report_periods p JOIN comms.reports r ON r.id = p.report_id
         WHERE (p.state = 'closed' OR (p.state = 'open' AND p.ends_on < $1::date))
           AND NOT EXISTS (SELECT 1 FROM comms.digests d WHERE d.period_id = p.id)
         ORDER BY p.ends_on, p.id",
    )
    .bind(now)
    .fetch_all(&runtime.pool)
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
    Ok(periods.len())
}

/// Checks the schedule every few seconds (by `clock`) until `shutdown`.
pub async fn run(runtime: Runtime, clock: Arc<dyn Clock>, shutdown: Shutdown) {
    let Ok(Some(cron)) = parse(&runtime.settings.digest.schedule) else {
        return; // off (an invalid schedule was refused at start)
    };
    let mut last = clock.now();
    let mut publisher: Option<(lapin::Connection, Publisher)> = None;
    loop {
        let now = clock.now();
        if due(&cron, last, now) {
            if publisher.as_ref().is_none_or(|(_, p)| !p.is_usable()) {
                publisher = crate::batch::flush::connect(&runtime).await.ok();
            }
            let result = match publisher.as_ref() {
                Some((_, p)) => enqueue_due(&runtime, p, now).await,
                None => Err(anyhow::anyhow!("broker unavailable")),
            };
            match result {
                Ok(n) => {
                    tracing::info!(periods = n, "scheduled digest jobs enqueued");
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
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
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
        assert!(!due(
            &cron,
            utc("2025-03-01T05:00:00Z"),
            utc("2025-03-01T05:59:59Z")
        ));
        assert!(due(
            &cron,
            utc("2025-03-01T05:59:59Z"),
            utc("2025-03-01T06:00:00Z")
        ));
        assert!(!due(
            &cron,
            utc("2025-03-01T06:00:00Z"),
            utc("2025-03-01T12:00:00Z")
        ));
    }
}
