//! One incident fleet: a sender with a sandbox, the incident worker, approved incident
//! templates, and helpers to publish events and read what happened.

use std::time::Duration;

use comms_domain::approvals::{self, Decision};
use comms_domain::pause::Scope;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::eventually;
use comms_tests::fleet::{SendFleet, WorkerProcess};
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(60);

pub struct IncidentFleet {
    pub fleet: SendFleet,
    pub worker: Option<(
        Shutdown,
        tokio::task::JoinHandle<anyhow::Result<()>>,
        sqlx::PgPool,
    )>,
    /// The worker as a child process (`incidents-worker`), for kill -9.
    pub process: Option<WorkerProcess>,
}

impl IncidentFleet {
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        let mut all = vec![("COMMS__INCIDENTS__CHECK_INTERVAL", "100ms")];
        all.extend_from_slice(overrides);
        let fleet = SendFleet::start(&all).await;
        for channel in ["sms", "email", "portal"] {
            let subject = (channel != "sms").then_some("Service notice");
            for name in ["incident-notice", "incident-update", "incident-resolved"] {
                fleet
                    .approved_template(
                        &format!("{name}.{channel}"),
                        channel,
                        subject,
                        &format!("{{{{ what }}}}. Severity {{{{ severity }}}}. We are still investigating and we will update you ({}).", name.replace('-', " ")),
                    )
                    .await;
            }
        }
        let mut this = Self {
            fleet,
            worker: None,
            process: None,
        };
        this.start_worker().await;
        this
    }

    /// The fleet with the incident worker as a child process instead of a task.
    pub async fn start_process(overrides: &[(&str, &str)]) -> Self {
        let mut this = Self::start(overrides).await;
        if let Some((shutdown, task, _)) = this.worker.take() {
            shutdown.cancel();
            let _ = task.await;
        }
        this.spawn_process();
        this
    }

    /// Starts `incidents-worker` on the fleet's database, broker namespace and overrides.
    pub fn spawn_process(&mut self) {
        let binary = env!("CARGO_BIN_EXE_incidents-worker");
        self.process = Some(self.fleet.spawn_process(binary));
    }

    /// kill -9 of the worker process: no shutdown, no cleanup, sessions cut by the OS.
    pub fn kill_process(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill_9();
        }
    }

    /// Starts the incident worker on a pool of its own (so stopping it drops its sessions).
    pub async fn start_worker(&mut self) {
        let pool = comms_runtime::db::connect(&self.fleet.env.settings.database)
            .await
            .expect("worker pool");
        let runtime = Runtime::new(self.fleet.env.settings.clone(), pool.clone());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(comms_incidents::run(runtime, shutdown.clone()));
        self.worker = Some((shutdown, task, pool));
    }

    pub async fn stop(mut self) {
        if let Some((shutdown, task, _)) = self.worker.take() {
            shutdown.cancel();
            let _ = task.await;
        }
        self.fleet.stop().await;
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.fleet.env.pool
    }

    /// A client with `n` contacts, each with an SMS and an email address of `consent`.
    pub async fn client(&self, name: &str, n: usize, consent: &str) -> (Uuid, Vec<Uuid>) {
        let client: Uuid = sqlx::query_scalar(
            "INSERT INTO comms.clients (name, owner) VALUES ($1, 'ana') RETURNING id",
        )
        .bind(name)
        .fetch_one(self.pool())
        .await
        .expect("client");
        let contacts: Vec<Uuid> = sqlx::query_scalar(
            "WITH base AS (SELECT count(*) AS n FROM comms.contacts),
                  c AS (INSERT INTO comms.contacts (name, client_id)
                        SELECT (base.n + g)::text, $1 FROM base, generate_series(1, $2) g
                        RETURNING id, name),
                  s AS (INSERT INTO comms.contact_channels (contact_id, channel, address, consent_state)
                        SELECT id, 'sms', '+1415' || lpad(name, 7, '0'), $3 FROM c),
                  e AS (INSERT INTO comms.contact_channels (contact_id, channel, address, consent_state)
                        SELECT id, 'email', 'c' || name || '@example.com', $3 FROM c)
             SELECT id FROM c",
        )
        .bind(client)
        .bind(i32::try_from(n).expect("n"))
        .bind(consent)
        .fetch_all(self.pool())
        .await
        .expect("contacts");
        (client, contacts)
    }

    /// Publishes an incident event as incident tooling would.
    pub async fn event(&self, routing_key: &str, event: &serde_json::Value) {
        let body = serde_json::to_vec(event).expect("json");
        let exchange = self.fleet.env.topology.incident_exchange();
        self.fleet.env.publish(&exchange, routing_key, &body).await;
    }

    pub async fn notice_state(&self, incident: Uuid, sequence: i64) -> Option<String> {
        sqlx::query_scalar(
            "SELECT state FROM comms.incident_notices WHERE incident_id = $1 AND sequence = $2",
        )
        .bind(incident)
        .bind(sequence)
        .fetch_optional(self.pool())
        .await
        .expect("notice")
    }

    pub async fn wait_notice(&self, incident: Uuid, sequence: i64, state: &str) -> bool {
        eventually(WAIT, || async {
            self.notice_state(incident, sequence).await.as_deref() == Some(state)
        })
        .await
    }

    /// Decides the waiting proof of a notice as its owner, and hands it back to the sender.
    pub async fn decide_proof(&self, incident: Uuid, sequence: i64, decision: Decision) {
        let waiting = eventually(WAIT, || async {
            let state: Option<String> = sqlx::query_scalar(
                "SELECT m.delivery_state FROM comms.messages m JOIN comms.incident_notices n
                   ON n.proof_key = m.idempotency_key
                 WHERE n.incident_id = $1 AND n.sequence = $2",
            )
            .bind(incident)
            .bind(sequence)
            .fetch_optional(self.pool())
            .await
            .expect("proof");
            state.as_deref() == Some("awaiting_approval")
        })
        .await;
        let seen: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT delivery_state, failure_reason FROM comms.messages WHERE record_id = $1",
        )
        .bind(incident)
        .fetch_all(self.pool())
        .await
        .expect("messages");
        assert!(
            waiting,
            "the proof waits for the owner's approval: {seen:?}"
        );
        let key: String = sqlx::query_scalar(
            "SELECT proof_key FROM comms.incident_notices WHERE incident_id = $1 AND sequence = $2",
        )
        .bind(incident)
        .bind(sequence)
        .fetch_one(self.pool())
        .await
        .expect("proof key");
        let approve = matches!(decision, Decision::Approve);
        let decided = approvals::decide(self.pool(), &key, decision, "ana")
            .await
            .expect("decision");
        if approve {
            approvals::republish(
                self.pool(),
                &self.fleet.env.publisher,
                &self.fleet.env.topology,
                decided.message_id,
            )
            .await
            .expect("republish");
        }
    }

    /// Whether the sender's pause switch has a pause of `client` (bounded wait).
    pub async fn client_paused(&self, client: Uuid) -> bool {
        eventually(WAIT, || async {
            self.fleet
                .switch
                .active()
                .iter()
                .any(|p| p.scope == Scope::Client(client))
        })
        .await
    }

    /// A connection as the portal role, which sees only the `portal` views.
    pub async fn portal(&self) -> PgConnection {
        let url = self.fleet.env.settings.database.url.expose_secret();
        let mut portal = PgConnection::connect(url).await.expect("connect");
        sqlx::query("SET ROLE comms_portal")
            .execute(&mut portal)
            .await
            .expect("role");
        portal
    }

    /// Incident notices by delivery state.
    pub async fn notices(&self, incident: Uuid, state: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM comms.messages WHERE kind = 'incident_notice'
               AND record_id = $1 AND delivery_state = $2",
        )
        .bind(incident)
        .bind(state)
        .fetch_one(self.pool())
        .await
        .expect("count")
    }
}

/// An incident event (v1) for `clients`.
pub fn incident(id: Uuid, sequence: i64, verified: bool, clients: &[Uuid]) -> serde_json::Value {
    json!({
        "incident_id": id,
        "sequence": sequence,
        "title": "Tracking pixel outage (internal: db-7 failover)",
        "severity": "major",
        "affected": {"clients": clients},
        "facts_verified": verified,
        "owner": "ana",
        "source": "statuspage",
        "occurred_at": chrono::Utc::now(),
        "template": {"name": "incident-notice", "vars": {"what": "conversion tracking is delayed"}},
        "summary_internal": "root cause: db-7 replica lag, customer 4411 escalated",
    })
}
