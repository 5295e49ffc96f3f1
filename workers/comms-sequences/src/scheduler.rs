//! The scheduler: due steps become send requests, once each, in order, across restarts.
//!
//! A round locks due enrolments with `FOR UPDATE SKIP LOCKED` (replicas share the work and never
//! handle one enrolment at the same time), checks each one's exits, publishes its step to
//! `comms.send` with a publisher confirm, and — in the same transaction — records the send and
//! moves the enrolment to its next step. The order is what makes it safe:
//!
//! - a crash (even `kill -9`) before the commit leaves the enrolment due: the step is published
//!   again with the same idempotency key, and the sender records one message per key, so a step is
//!   never sent twice;
//! - nothing moves an enrolment on before the broker confirmed its step, so a step is never lost;
//! - a step is never skipped silently: an enrolment ends only with a recorded exit reason, and a
//!   worker that was down sends overdue steps late, one after another with their delays, rather
//!   than dropping them.
//!
//! Rollback corrections (`seq:<enrolment>:correction`) go out the same way.

use comms_runtime::runtime::rounds::{Rounds, open_publisher, run_rounds};
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use comms_domain::sequences::store::{self, StepRow};
use comms_domain::sequences::{exit, step_key, timing, trigger};
use comms_runtime::amqp::{self, Outgoing, Publisher};
use comms_runtime::clock::Clock;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::request::StepRequest;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("publish: {0}")]
    Publish(#[from] amqp::PublishError),
}

#[derive(sqlx::FromRow)]
struct Due {
    id: Uuid,
    sequence_name: String,
    sequence_version: i32,
    contact_id: Uuid,
    record_type: String,
    record_id: Uuid,
    owner: String,
    source: String,
    next_step: i32,
    exit_on: Vec<String>,
    time_zone: Option<String>,
    contact_name: Option<String>,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub steps: usize,
    pub exits: usize,
    pub corrections: usize,
}

impl Round {
    fn total(&self) -> usize {
        self.steps + self.exits + self.corrections
    }
}

/// One round at `now`, committed.
pub async fn round(
    runtime: &Runtime,
    publisher: &Publisher,
    now: DateTime<Utc>,
) -> Result<Round, ScheduleError> {
    let mut tx = runtime.pool.begin().await?;
    let done = claim_and_publish(runtime, publisher, &mut tx, now).await?;
    tx.commit().await?;
    metrics().steps.inc_by(done.steps as u64);
    metrics().corrections.inc_by(done.corrections as u64);
    Ok(done)
}

/// Everything of a round but the commit: claims, checks exits, publishes (confirmed) and records.
/// Dropping `tx` instead of committing is what a crash after the publish looks like (tests use
/// it); the next round publishes the same keys again.
pub async fn claim_and_publish(
    runtime: &Runtime,
    publisher: &Publisher,
    tx: &mut Transaction<'_, Postgres>,
    now: DateTime<Utc>,
) -> Result<Round, ScheduleError> {
    let batch = i64::from(runtime.settings.sequences.batch);
    let due: Vec<Due> = sqlx::query_as(
        "SELECT e.id, e.sequence_name, e.sequence_version, e.contact_id, e.record_type, e.record_id,
                e.owner, e.source, e.next_step, s.exit_on, c.time_zone, c.name AS contact_name
         FROM comms.sequence_enrolments e
         JOIN comms.sequences s ON s.name = e.sequence_name AND s.version = e.sequence_version
         JOIN comms.contacts c ON c.id = e.contact_id
         WHERE e.state = 'active' AND e.next_due_at <= $1
         ORDER BY e.next_due_at, e.id LIMIT $2
         FOR UPDATE OF e SKIP LOCKED",
    )
    .bind(now)
    .bind(batch)
    .fetch_all(&mut **tx)
    .await?;
    let exchange = runtime.topology.send_exchange();
    let mut steps: HashMap<(String, i32), Vec<StepRow>> = HashMap::new();
    let mut done = Round::default();
    for enrolment in &due {
        let version = (enrolment.sequence_name.clone(), enrolment.sequence_version);
        if !steps.contains_key(&version) {
            let rows = store::steps(&mut **tx, &version.0, version.1).await?;
            steps.insert(version.clone(), rows);
        }
        let all = steps.get(&version).map(Vec::as_slice).unwrap_or_default();
        let index = usize::try_from(enrolment.next_step - 1).unwrap_or(usize::MAX);
        let Some(step) = all.get(index) else {
            finish(tx, enrolment.id, now).await?;
            continue;
        };
        let channel = step.channel.as_str();
        if let Some(reason) = exit::check(tx, enrolment.id, &enrolment.exit_on, channel).await? {
            let detail = format!("before step {}", step.position);
            exit::end(tx, enrolment.id, reason, &detail, exit::ACTOR, now).await?;
            done.exits += 1;
            continue;
        }
        let key = step_key(enrolment.id, step.position);
        let body = StepRequest {
            key: &key,
            channel,
            kind: &step.kind,
            contact_id: enrolment.contact_id,
            contact_name: enrolment.contact_name.as_deref(),
            template: (&step.template_name, step.template_version),
            record: (&enrolment.record_type, enrolment.record_id),
            owner: &enrolment.owner,
            source: &enrolment.source,
            sequence: &enrolment.sequence_name,
            step: step.position,
            trigger: trigger(&enrolment.sequence_name),
        }
        .body();
        publish(publisher, &exchange, channel, &key, &body).await?;
        record_send(tx, enrolment.id, step.position, &key, channel, now).await?;
        match all.get(index + 1) {
            Some(next) => {
                let zone = enrolment.time_zone.as_deref();
                let at = timing::due_after(next.timing(), now, zone);
                sqlx::query(
                    "UPDATE comms.sequence_enrolments SET next_step = $2, next_due_at = $3 WHERE id = $1",
                )
                .bind(enrolment.id)
                .bind(next.position)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
            None => finish(tx, enrolment.id, now).await?,
        }
        done.steps += 1;
    }
    done.corrections = corrections(runtime, publisher, tx, now).await?;
    Ok(done)
}

async fn publish(
    publisher: &Publisher,
    exchange: &str,
    channel: &str,
    key: &str,
    body: &[u8],
) -> Result<(), amqp::PublishError> {
    publisher
        .publish(Outgoing {
            exchange,
            routing_key: &format!("send.{channel}"),
            body,
            message_id: Some(key.to_string()),
            ..Outgoing::default()
        })
        .await
}

async fn record_send(
    tx: &mut Transaction<'_, Postgres>,
    enrolment: Uuid,
    step: i32,
    key: &str,
    channel: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.sequence_sends (enrolment_id, step, idempotency_key, channel, due_at, published_at)
         SELECT $1, $2, $3, $4, COALESCE(next_due_at, $5), $5 FROM comms.sequence_enrolments WHERE id = $1
         ON CONFLICT (enrolment_id, step) DO NOTHING",
    )
    .bind(enrolment)
    .bind(step)
    .bind(key)
    .bind(channel)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn finish(
    tx: &mut Transaction<'_, Postgres>,
    enrolment: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE comms.sequence_enrolments SET state = 'completed', next_step = NULL,
             next_due_at = NULL, ended_at = $2
         WHERE id = $1",
    )
    .bind(enrolment)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Correction {
    id: Uuid,
    sequence_name: String,
    contact_id: Uuid,
    record_type: String,
    record_id: Uuid,
    owner: String,
    source: String,
    template: String,
    version: i32,
    channel: String,
    contact_name: Option<String>,
}

/// Sends the rollback correction of every enrolment that has one due, once.
async fn corrections(
    runtime: &Runtime,
    publisher: &Publisher,
    tx: &mut Transaction<'_, Postgres>,
    now: DateTime<Utc>,
) -> Result<usize, ScheduleError> {
    let due: Vec<Correction> = sqlx::query_as(
        "SELECT e.id, e.sequence_name, e.contact_id, e.record_type, e.record_id, e.owner, e.source,
                s.correction_template AS template, s.correction_version AS version, t.channel,
                c.name AS contact_name
         FROM comms.sequence_enrolments e
         JOIN comms.sequences s ON s.name = e.sequence_name AND s.version = e.sequence_version
         JOIN comms.templates t ON t.name = s.correction_template AND t.version = s.correction_version
         JOIN comms.contacts c ON c.id = e.contact_id
         WHERE e.correction_due
         ORDER BY e.id LIMIT $1
         FOR UPDATE OF e SKIP LOCKED",
    )
    .bind(i64::from(runtime.settings.sequences.batch))
    .fetch_all(&mut **tx)
    .await?;
    let exchange = runtime.topology.send_exchange();
    for c in &due {
        let key = step_key(c.id, 0);
        let body = StepRequest {
            key: &key,
            channel: &c.channel,
            kind: "outreach",
            contact_id: c.contact_id,
            contact_name: c.contact_name.as_deref(),
            template: (&c.template, c.version),
            record: (&c.record_type, c.record_id),
            owner: &c.owner,
            source: &c.source,
            sequence: &c.sequence_name,
            step: 0,
            trigger: format!("sequence-correction:{}", c.sequence_name),
        }
        .body();
        publish(publisher, &exchange, &c.channel, &key, &body).await?;
        record_send(tx, c.id, 0, &key, &c.channel, now).await?;
        sqlx::query(
            "WITH sent AS (
                 UPDATE comms.sequence_enrolments SET correction_due = false, correction_sent_at = $2
                 WHERE id = $1 RETURNING sequence_name, sequence_version)
             UPDATE comms.sequences s SET corrections_sent = corrections_sent + 1
             FROM sent WHERE s.name = sent.sequence_name AND s.version = sent.sequence_version",
        )
        .bind(c.id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(due.len())
}

/// Runs rounds every `sequences.interval` (by the wall clock; "due" is by `clock`) until
/// `shutdown`, reconnecting after any failure.
pub async fn run(runtime: Runtime, clock: Arc<dyn Clock>, shutdown: Shutdown) {
    let rounds = Rounds {
        health_check: "sequence-scheduler",
        healthy: "scheduling",
        connection_name: "comms-sequences",
        interval: runtime.settings.sequences.interval,
        full: runtime.settings.sequences.batch as usize,
        on_failure: "sequence round failed; the steps stay due and go out later",
    };
    let looping = runtime.clone();
    run_rounds(looping, shutdown, rounds, |publisher| {
        let (runtime, now) = (runtime.clone(), clock.now());
        async move {
            round(&runtime, &publisher, now)
                .await
                .map(|done| done.total())
        }
    })
    .await;
}

/// A confirm-mode publisher on a connection of its own, with the topology declared.
pub async fn connect(runtime: &Runtime) -> Result<(lapin::Connection, Publisher), ScheduleError> {
    Ok(open_publisher(runtime, "comms-sequences").await?)
}

pub struct Metrics {
    pub steps: prometheus::IntCounter,
    pub corrections: prometheus::IntCounter,
}

/// `comms_sequence_steps_published_total`, `comms_sequence_corrections_total`.
pub fn metrics() -> &'static Metrics {
    static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| Metrics {
        steps: comms_runtime::metrics::counter(
            "comms_sequence_steps_published_total",
            "Sequence steps handed to comms.send (confirmed)",
            &[],
        )
        .with_label_values::<&str>(&[]),
        corrections: comms_runtime::metrics::counter(
            "comms_sequence_corrections_total",
            "Rollback corrections handed to comms.send (confirmed)",
            &[],
        )
        .with_label_values::<&str>(&[]),
    });
    &METRICS
}
