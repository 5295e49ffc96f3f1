//! The incident fan-out at scale (`BENCH_ONLY=incidents`): one verified `incident.declared`
//! affecting every client of the bench (1 000 by default, 100 000 contacts between them), through
//! the real `comms-incidents` and `comms-sender` binaries and the sandbox provider.
//!
//! The first notice of an incident needs its owner's approval: the worker publishes one proof,
//! the sender parks it `awaiting_approval`, and the bench approves it the way an owner does
//! (`comms_domain::approvals::decide`, then the stored request handed back to `comms.send`, as
//! `commsctl approve` and `POST /v1/approvals/{id}/approve` do). The owner's time is a person's,
//! not the fleet's, so it is reported apart and left out of the fan-out figure.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use comms_domain::approvals::{self, Decision};
use comms_runtime::amqp::{Outgoing, Publisher};
use serde_json::json;
use uuid::Uuid;

use crate::load::Bench;
use crate::procs::{self, Worker};

/// The owner of the bench's incidents, who approves the first notice.
const OWNER: &str = "bench";
/// Sender processes draining the notices.
pub const SENDERS: usize = 2;
/// How long any one phase may take before the run is called failed.
const LIMIT: Duration = Duration::from_secs(900);

/// What one run measured, in seconds unless said otherwise.
pub struct IncidentRun {
    pub clients: usize,
    pub contacts: usize,
    /// SMS + email + portal send requests the fan-out published.
    pub published: i64,
    pub skipped: i64,
    /// `incident.declared` confirmed by the broker → the proof waits for the owner.
    pub declared_to_proof: f64,
    /// The owner's approval (the bench's own, immediate): proof waiting → decision committed.
    pub owner: f64,
    /// Decision committed → the notice's last chunk published (broker-confirmed) and committed.
    pub approved_to_published: f64,
    /// Decision committed → the last notice recorded `sent`.
    pub approved_to_sent: f64,
    pub rss: String,
}

impl IncidentRun {
    /// The fleet's part of declared → last send request published (the owner's time left out).
    pub fn fan_out(&self) -> f64 {
        self.declared_to_proof + self.approved_to_published
    }

    /// The fleet's part of declared → last `sent`.
    pub fn to_sent(&self) -> f64 {
        self.declared_to_proof + self.approved_to_sent
    }
}

/// `clients` clients with `contacts` contacts between them, each contact with one address (SMS
/// and email alternate), express consent; and the approved incident templates.
async fn seed(bench: &Bench, clients: usize, contacts: usize) -> anyhow::Result<Vec<Uuid>> {
    let per_client = (contacts / clients.max(1)).max(1);
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO comms.clients (name, owner)
         SELECT 'Incident client ' || g, $2 FROM generate_series(1, $1) g RETURNING id",
    )
    .bind(i32::try_from(clients)?)
    .bind(OWNER)
    .fetch_all(&bench.pool)
    .await?;
    sqlx::query(
        "WITH c AS (INSERT INTO comms.contacts (name, client_id)
                    SELECT 'Contact ' || (k * $2 + g), id
                    FROM unnest($1::uuid[]) WITH ORDINALITY AS cl(id, k), generate_series(1, $2) g
                    RETURNING id, substr(name, 9)::bigint AS n)
         INSERT INTO comms.contact_channels (contact_id, channel, address, consent_state)
         SELECT id, CASE WHEN n % 2 = 0 THEN 'sms' ELSE 'email' END,
                CASE WHEN n % 2 = 0 THEN '+1415' || lpad(n::text, 7, '0') ELSE 'c' || n || '@example.com' END,
                'express'
         FROM c",
    )
    .bind(&ids)
    .bind(i32::try_from(per_client)?)
    .execute(&bench.pool)
    .await?;
    for (channel, subject) in [
        ("sms", None),
        ("email", Some("Service notice")),
        ("portal", Some("Service notice")),
    ] {
        sqlx::query(
            "INSERT INTO comms.templates (name, version, channel, subject, body, state, created_by, approved_by, approved_at)
             VALUES ($1, 1, $2, $3, '{{ what }}. Severity {{ severity }}. We are still investigating and we will update you.',
                     'approved', $4, $4, now())",
        )
        .bind(format!("incident-notice.{channel}"))
        .bind(channel)
        .bind(subject)
        .bind(OWNER)
        .execute(&bench.pool)
        .await?;
    }
    sqlx::query("ANALYZE").execute(&bench.pool).await?;
    Ok(ids)
}

/// Polls `query` (one value, `None` until ready) every 50 ms for at most [`LIMIT`].
async fn until<T, F, Fut>(what: &str, mut query: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(value) = query().await? {
            return Ok(value);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1e6
}

pub async fn fan_out(
    bench: &Bench,
    clients: usize,
    contacts: usize,
) -> anyhow::Result<IncidentRun> {
    let client_ids = seed(bench, clients, contacts).await?;
    let mut workers = Vec::new();
    let mut ports = Vec::new();
    for i in 0..SENDERS {
        let port = procs::free_port()?;
        let env = bench.sender_env(port);
        workers.push(Worker::start(
            &format!("sender-{i}"),
            "comms-sender",
            &[],
            &env,
        )?);
        ports.push(port);
    }
    let port = procs::free_port()?;
    workers.push(Worker::start(
        "incidents",
        "comms-incidents",
        &[],
        &bench.sender_env(port),
    )?);
    ports.push(port);
    let measured = async {
        for port in &ports {
            procs::wait_http(
                &format!("http://127.0.0.1:{port}/readyz"),
                Duration::from_secs(30),
            )
            .await?;
        }
        measure(bench, &client_ids).await
    }
    .await;
    let mut rss = Vec::new();
    for worker in workers {
        rss.push(format!(
            "{} {:.0}",
            worker.name,
            worker.peak_rss_mib().unwrap_or(f64::NAN)
        ));
        worker.stop().await;
    }
    let mut run = measured?;
    run.clients = clients;
    run.contacts = contacts;
    run.rss = rss.join(", ");
    Ok(run)
}

async fn measure(bench: &Bench, clients: &[Uuid]) -> anyhow::Result<IncidentRun> {
    let id = Uuid::new_v4();
    let event = json!({
        "incident_id": id,
        "sequence": 1,
        "title": "Bench: tracking pipeline outage",
        "severity": "major",
        "affected": {"clients": clients},
        "facts_verified": true,
        "owner": OWNER,
        "source": "comms-bench",
        "occurred_at": Utc::now(),
        "template": {"name": "incident-notice", "vars": {"what": "Conversion tracking is delayed"}},
    });
    let body = serde_json::to_vec(&event)?;
    let publisher = Publisher::open(&bench.connection).await?;
    let exchange = bench.topology.incident_exchange();
    let declared = Utc::now();
    publisher
        .publish(Outgoing {
            exchange: &exchange,
            routing_key: "incident.declared",
            body: &body,
            ..Outgoing::default()
        })
        .await
        .context("publishing incident.declared")?;

    // The proof waits for the owner: when the sender parked it.
    let (proof, waiting_since): (String, DateTime<Utc>) = until("the proof", || async {
        let refused: Option<String> = sqlx::query_scalar(
            "SELECT m.failure_reason FROM comms.incident_notices n
             JOIN comms.messages m ON m.idempotency_key = n.proof_key
             WHERE n.incident_id = $1 AND m.delivery_state IN ('blocked', 'failed')",
        )
        .bind(id)
        .fetch_optional(&bench.pool)
        .await?;
        if let Some(reason) = refused {
            anyhow::bail!("the sender refused the proof: {reason}");
        }
        Ok(sqlx::query_as(
            "SELECT m.idempotency_key, e.occurred_at
             FROM comms.incident_notices n
             JOIN comms.messages m ON m.idempotency_key = n.proof_key
             JOIN comms.message_events e ON e.message_id = m.id AND e.event_type = 'approval_requested'
             WHERE n.incident_id = $1 AND m.delivery_state = 'awaiting_approval'",
        )
        .bind(id)
        .fetch_optional(&bench.pool)
        .await?)
    })
    .await?;
    // The owner approves, as `commsctl approve` does.
    let decided = approvals::decide(&bench.pool, &proof, Decision::Approve, OWNER).await?;
    approvals::republish(&bench.pool, &publisher, &bench.topology, decided.message_id).await?;

    let (finished, published, skipped): (DateTime<Utc>, i64, i64) =
        until("the fan-out", || async {
            Ok(sqlx::query_as(
                "SELECT finished_at, (published_sms + published_email + published_portal)::int8,
                        skipped::int8
                 FROM comms.incident_notices WHERE incident_id = $1 AND state = 'done'",
            )
            .bind(id)
            .fetch_optional(&bench.pool)
            .await?)
        })
        .await?;
    let pattern = format!("incident:{id}:%");
    let last_sent: DateTime<Utc> = until("every notice sent", || async {
        let (sent, last): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*), max(dispatched_at) FROM comms.messages
             WHERE idempotency_key LIKE $1 AND delivery_state = 'sent'",
        )
        .bind(&pattern)
        .fetch_one(&bench.pool)
        .await?;
        Ok(last.filter(|_| sent >= published))
    })
    .await?;
    Ok(IncidentRun {
        clients: 0,
        contacts: 0,
        published,
        skipped,
        declared_to_proof: seconds(declared, waiting_since),
        owner: seconds(waiting_since, decided.decided_at),
        approved_to_published: seconds(decided.decided_at, finished),
        approved_to_sent: seconds(decided.decided_at, last_sent),
        rss: String::new(),
    })
}
