//! Outreach sequences and outcomes (docs/sequences.md, docs/outcomes.md) against the real broker,
//! database, sender and sandbox, with one clock the test controls for the sender and the
//! scheduler.

mod definitions;
mod escalation;
mod exits;
mod figures;
mod outcomes;
mod reviews;
mod roi;
mod rollback;
mod running;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_domain::sequences::{definition::Definition, store};
use comms_runtime::clock::{Clock, ManualClock};
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::TestEnv;
use comms_tests::eventually;
use comms_tests::fleet::SendFleet;
use serde_json::{Value, json};
use uuid::Uuid;

pub const FAST: &[(&str, &str)] = &[("COMMS__SEQUENCES__INTERVAL", "20ms")];
pub const WAIT: Duration = Duration::from_secs(30);

pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("a test time")
}

/// A running `comms-sequences` on the test's namespace, on `clock`.
pub struct Worker {
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    pub fn start(env: &TestEnv, clock: &ManualClock) -> Self {
        let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
        let shutdown = Shutdown::new();
        let clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let task = tokio::spawn(comms_sequences::run_with_clock(
            runtime,
            clock,
            shutdown.clone(),
        ));
        Self { shutdown, task }
    }

    /// Kills the worker where it stands (no drain, no goodbye), like `kill -9`.
    pub fn kill(self) {
        self.task.abort();
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// A sender and sandbox on a controlled clock, the sequence templates, and (once started) the
/// scheduler on the same clock.
pub struct Seq {
    pub fleet: SendFleet,
    pub clock: ManualClock,
    pub worker: Option<Worker>,
}

impl Seq {
    /// Everything but the scheduler, at `now`.
    pub async fn prepare(now: &str) -> Self {
        let fleet = SendFleet::start_at(FAST, at(now)).await;
        let clock = fleet.clock.clone().expect("a manual clock");
        for (name, channel, body) in [
            (
                "intro",
                "sms",
                "Hi {{ contact_name }}, step {{ step }} of {{ sequence }}",
            ),
            (
                "follow",
                "sms",
                "Still interested, {{ contact_name }}? ({{ step }})",
            ),
            ("final", "email", "Last note from us ({{ step }})"),
            (
                "sorry",
                "sms",
                "Please ignore our earlier message ({{ sequence }})",
            ),
        ] {
            let subject = (channel == "email").then_some("A note");
            fleet.approved_template(name, channel, subject, body).await;
        }
        Self {
            fleet,
            clock,
            worker: None,
        }
    }

    /// [`Seq::prepare`] and the scheduler.
    pub async fn start(now: &str) -> Self {
        let mut seq = Self::prepare(now).await;
        seq.start_worker();
        seq
    }

    pub fn start_worker(&mut self) {
        self.worker = Some(Worker::start(&self.fleet.env, &self.clock));
    }

    pub fn env(&self) -> &TestEnv {
        &self.fleet.env
    }

    /// A lead's contact with an SMS number and an email address, both with express consent.
    pub async fn lead(&self, phone: &str, time_zone: Option<&str>) -> Uuid {
        let pool = &self.env().pool;
        let lead: Uuid = sqlx::query_scalar(
            "INSERT INTO comms.leads (client_id, name, owner) VALUES ($1, 'Lead', 'ana') RETURNING id",
        )
        .bind(self.fleet.client_id)
        .fetch_one(pool)
        .await
        .expect("lead");
        let contact: Uuid = sqlx::query_scalar(
            "INSERT INTO comms.contacts (name, time_zone, lead_id) VALUES ('Dana', $1, $2) RETURNING id",
        )
        .bind(time_zone)
        .bind(lead)
        .fetch_one(pool)
        .await
        .expect("contact");
        for (channel, address) in [
            ("sms", phone.to_string()),
            ("email", format!("{contact}@example.com")),
        ] {
            sqlx::query(
                "INSERT INTO comms.contact_channels (contact_id, channel, address, consent_state)
                 VALUES ($1, $2, $3, 'express')",
            )
            .bind(contact)
            .bind(channel)
            .bind(address)
            .execute(pool)
            .await
            .expect("channel");
        }
        contact
    }

    /// Adds a definition (a draft); returns its version.
    pub async fn define(&self, definition: &Value) -> Result<i32, String> {
        let parsed = Definition::parse(definition.to_string().as_bytes())?;
        store::add(&self.env().pool, &parsed, "ana")
            .await
            .map_err(|e| e.to_string())
    }

    /// Adds and activates (by its escalation owner) a definition.
    pub async fn active(&self, definition: &Value) -> i32 {
        let version = self.define(definition).await.expect("added");
        let name = definition["name"].as_str().expect("name");
        let owner = definition["escalation_owner"].as_str().expect("owner");
        store::activate(&self.env().pool, (name, version), owner, self.clock.now())
            .await
            .expect("activated");
        version
    }

    /// Publishes an enrolment on `comms.sequence` as upstream would.
    pub async fn enrol(&self, contact: Uuid, sequence: &str) {
        let body = json!({
            "schema": "comms.enrolment.v1", "contact_id": contact, "sequence": sequence,
            "record": { "type": "client", "id": self.fleet.client_id },
            "owner": "ana", "source": "crm"
        });
        let env = self.env();
        env.publish(
            &env.topology.sequence_exchange(),
            "sequence.enrol",
            body.to_string().as_bytes(),
        )
        .await;
    }

    /// The contact's enrolment in `sequence`, once it exists.
    pub async fn enrolment(&self, contact: Uuid, sequence: &str) -> Uuid {
        let lookup = || async {
            sqlx::query_scalar::<_, Uuid>(
                "SELECT id FROM comms.sequence_enrolments WHERE contact_id = $1 AND sequence_name = $2",
            )
            .bind(contact)
            .bind(sequence)
            .fetch_optional(&self.env().pool)
            .await
            .expect("enrolment")
        };
        let exists = eventually(WAIT, || async { lookup().await.is_some() }).await;
        assert!(exists, "the enrolment was recorded");
        lookup().await.expect("enrolment")
    }

    /// How many steps (and corrections) of an enrolment were handed to comms.send.
    pub async fn published(&self, enrolment: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM comms.sequence_sends WHERE enrolment_id = $1")
            .bind(enrolment)
            .fetch_one(&self.env().pool)
            .await
            .expect("sends")
    }

    /// `(state, exit_reason)` of an enrolment.
    pub async fn enrolment_state(&self, enrolment: Uuid) -> (String, Option<String>) {
        sqlx::query_as("SELECT state, exit_reason FROM comms.sequence_enrolments WHERE id = $1")
            .bind(enrolment)
            .fetch_one(&self.env().pool)
            .await
            .expect("enrolment")
    }

    /// Messages the sandbox accepted for `to`.
    pub async fn delivered_to(&self, to: &str) -> usize {
        self.fleet
            .sandbox()
            .messages_to(to)
            .await
            .expect("sandbox")
            .len()
    }

    /// True if `condition` stays false for a while (the scheduler runs every 20 ms meanwhile).
    pub async fn stays_false<F, Fut>(&self, condition: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        !eventually(Duration::from_millis(400), condition).await
    }

    pub async fn stop(self) {
        if let Some(worker) = self.worker {
            worker.stop().await;
        }
        self.fleet.stop().await;
    }
}

/// `seq:<enrolment>:<step>`.
pub fn key(enrolment: Uuid, step: i32) -> String {
    comms_domain::sequences::step_key(enrolment, step)
}

/// A three-step definition: SMS now, SMS a day later, email two hours after that.
pub fn three_steps(name: &str) -> Value {
    json!({
        "name": name, "audience": "leads", "escalation_owner": "ana",
        "rollback": { "cancel_remaining": true, "correction_template": "sorry@1" },
        "steps": [
            { "channel": "sms", "template": "intro@1", "after": "0s" },
            { "channel": "sms", "template": "follow@1", "after": "1d" },
            { "channel": "email", "template": "final@1", "after": "2h" }
        ]
    })
}
