//! A running sender against a private sandbox provider, for tests that send real messages.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_domain::pause::store::{self as pause_store, PauseRequest};
use comms_domain::pause::switch::PauseSwitch;
use comms_domain::pause::{ActivePause, Scope};
use comms_runtime::clock::{Clock, ManualClock, SystemClock};
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_sandbox::{RunningSandbox, SandboxClient, SandboxConfig};
use uuid::Uuid;

use crate::TestEnv;

/// A test environment, a sandbox provider and a sender consuming the namespace's send queues.
pub struct SendFleet {
    pub env: TestEnv,
    pub sandbox: RunningSandbox,
    pub clock: Option<ManualClock>,
    pub client_id: Uuid,
    /// The sender's view of the pause switch.
    pub switch: PauseSwitch,
    shutdown: Shutdown,
    sender: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The `COMMS__*` overrides the fleet was made with, for a sender run as a process.
    overrides: Vec<(String, String)>,
}

/// A worker run as a child process (a test binary such as `sender-worker` or `incidents-worker`,
/// running the worker binary's `run_standalone`), for kill -9; killed when dropped, so no test
/// leaves one behind.
pub struct WorkerProcess(std::process::Child);

impl WorkerProcess {
    /// kill -9: no shutdown, no cleanup, connections cut by the operating system.
    pub fn kill_9(mut self) {
        use std::os::unix::process::ExitStatusExt;
        self.0.kill().expect("SIGKILL");
        let status = self.0.wait().expect("reaped");
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl SendFleet {
    /// Everything on the wall clock, rate limits lifted.
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        let mut fleet = Self::prepare(overrides, None).await;
        fleet.start_sender();
        fleet
    }

    /// Everything but the sender, which [`SendFleet::start_sender`] starts later.
    pub async fn without_sender(overrides: &[(&str, &str)]) -> Self {
        Self::prepare(overrides, None).await
    }

    /// With a controlled clock for the sender's time rules.
    pub async fn start_at(overrides: &[(&str, &str)], at: DateTime<Utc>) -> Self {
        let mut fleet = Self::prepare(overrides, Some(ManualClock::new(at))).await;
        fleet.start_sender();
        fleet
    }

    async fn prepare(overrides: &[(&str, &str)], clock: Option<ManualClock>) -> Self {
        let sandbox = RunningSandbox::start(SandboxConfig::generated().expect("signing key"))
            .await
            .expect("sandbox starts");
        let base = sandbox.base_url();
        let mut all: Vec<(&str, &str)> = vec![
            ("COMMS__PROVIDERS__TWILIO__BASE_URL", base.as_str()),
            ("COMMS__PROVIDERS__SENDGRID__BASE_URL", base.as_str()),
            ("COMMS__RATE__SMS__PER_SECOND", "0"),
            ("COMMS__RATE__EMAIL__PER_SECOND", "0"),
            ("COMMS__RATE__PORTAL__PER_SECOND", "0"),
            ("COMMS__SENDER__PROVIDER_TIMEOUT", "2s"),
        ];
        all.extend_from_slice(overrides);
        let env = TestEnv::with(&all).await;
        let overrides = all
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let client_id: Uuid = sqlx::query_scalar(
            "INSERT INTO comms.clients (name, owner) VALUES ('Acme Dental', 'ana') RETURNING id",
        )
        .fetch_one(&env.pool)
        .await
        .expect("client");
        let switch = PauseSwitch::new(env.settings.pause.max_staleness);
        Self {
            env,
            sandbox,
            clock,
            client_id,
            switch,
            shutdown: Shutdown::new(),
            sender: None,
            overrides,
        }
    }

    /// Starts a worker binary (one cargo builds for this package's tests, such as
    /// `sender-worker`) as a child process on this fleet's database, broker namespace, sandbox
    /// and overrides, logging warnings only.
    pub fn spawn_process(&self, binary: &str) -> WorkerProcess {
        use secrecy::ExposeSecret;
        let settings = &self.env.settings;
        let child = std::process::Command::new(binary)
            .envs(self.overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "COMMS__DATABASE__URL",
                settings.database.url.expose_secret(),
            )
            .env("COMMS__AMQP__URL", settings.amqp.url.expose_secret())
            .env("COMMS__AMQP__NAMESPACE", &settings.amqp.namespace)
            .env("COMMS__HTTP__LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("the worker process starts");
        WorkerProcess(child)
    }

    /// Starts the sender (with a fresh view of the pause switch).
    pub fn start_sender(&mut self) {
        let runtime = Runtime::new(self.env.settings.clone(), self.env.pool.clone());
        let clock: Arc<dyn Clock> = match &self.clock {
            Some(manual) => Arc::new(manual.clone()),
            None => Arc::new(SystemClock),
        };
        self.switch = PauseSwitch::new(self.env.settings.pause.max_staleness);
        self.sender = Some(tokio::spawn(comms_sender::run_with_switch(
            runtime,
            clock,
            self.switch.clone(),
            self.shutdown.clone(),
        )));
    }

    pub fn sandbox(&self) -> SandboxClient {
        self.sandbox.client()
    }

    /// Adds and approves a template version.
    pub async fn approved_template(
        &self,
        name: &str,
        channel: &str,
        subject: Option<&str>,
        body: &str,
    ) {
        sqlx::query(
            "INSERT INTO comms.templates (name, version, channel, subject, body, state, created_by, approved_by, approved_at)
             SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, 'approved', 'test', 'ana', now()
             FROM comms.templates WHERE name = $1",
        )
        .bind(name)
        .bind(channel)
        .bind(subject)
        .bind(body)
        .execute(&self.env.pool)
        .await
        .expect("template");
    }

    /// Pauses `scope` as on-call would and waits until the sender has applied it.
    pub async fn pause(&self, scope: Scope, expires_at: Option<DateTime<Utc>>) -> ActivePause {
        let pause = pause_store::pause(
            &self.env.pool,
            &PauseRequest {
                scope: scope.clone(),
                reason: "test pause".into(),
                actor: "oncall".into(),
                expires_at,
                automatic: false,
            },
        )
        .await
        .expect("pause");
        let applied = crate::eventually(Duration::from_secs(10), || async {
            self.switch.active().iter().any(|p| p.scope == scope)
        })
        .await;
        assert!(applied, "the sender applied the pause");
        pause
    }

    /// Resumes `scope` and waits until the sender has applied it.
    pub async fn resume(&self, scope: Scope) {
        pause_store::resume(&self.env.pool, &scope, "test resume", "oncall")
            .await
            .expect("resume");
        let applied = crate::eventually(Duration::from_secs(10), || async {
            !self.switch.active().iter().any(|p| p.scope == scope)
        })
        .await;
        assert!(applied, "the sender applied the resume");
    }

    /// A known contact with an SMS address and the given consent state.
    pub async fn sms_contact(&self, phone: &str, consent: &str) -> Uuid {
        let id: Uuid =
            sqlx::query_scalar("INSERT INTO comms.contacts (name) VALUES ('x') RETURNING id")
                .fetch_one(&self.env.pool)
                .await
                .expect("contact");
        sqlx::query(
            "INSERT INTO comms.contact_channels (contact_id, channel, address, consent_state)
             VALUES ($1, 'sms', $2, $3)",
        )
        .bind(id)
        .bind(phone)
        .bind(consent)
        .execute(&self.env.pool)
        .await
        .expect("contact channel");
        id
    }

    /// Publishes a send request as an upstream app would.
    pub async fn send(&self, request: &serde_json::Value) {
        let channel = request["channel"].as_str().unwrap_or("sms");
        let body = serde_json::to_vec(request).expect("json");
        self.send_raw(&format!("send.{channel}"), &body).await;
    }

    pub async fn send_raw(&self, routing_key: &str, body: &[u8]) {
        self.env
            .publish(&self.env.topology.send_exchange(), routing_key, body)
            .await;
    }

    /// The message's delivery state (None while not recorded).
    pub async fn state(&self, key: &str) -> Option<String> {
        sqlx::query_scalar("SELECT delivery_state FROM comms.messages WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(&self.env.pool)
            .await
            .expect("state query")
    }

    /// Waits until the message reaches `state`; returns whether it did.
    pub async fn reaches(&self, key: &str, state: &str) -> bool {
        crate::eventually(Duration::from_secs(30), || async {
            self.state(key).await.as_deref() == Some(state)
        })
        .await
    }

    /// `(failure_reason, attempt_count)` of a message.
    pub async fn failure(&self, key: &str) -> (Option<String>, i32) {
        sqlx::query_as(
            "SELECT failure_reason, attempt_count FROM comms.messages WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_one(&self.env.pool)
        .await
        .expect("message")
    }

    /// The event types of a message's timeline, in order.
    pub async fn timeline(&self, key: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT e.event_type FROM comms.message_events e JOIN comms.messages m ON m.id = e.message_id
             WHERE m.idempotency_key = $1 ORDER BY e.id",
        )
        .bind(key)
        .fetch_all(&self.env.pool)
        .await
        .expect("timeline")
    }

    /// Open owner tasks about a message.
    pub async fn open_tasks(&self, key: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM comms.tasks t JOIN comms.messages m ON m.id = t.message_id
             WHERE m.idempotency_key = $1 AND t.state = 'open'",
        )
        .bind(key)
        .fetch_one(&self.env.pool)
        .await
        .expect("tasks")
    }

    /// Stops the sender, the sandbox and removes the namespace and database.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Some(sender) = self.sender {
            sender
                .await
                .expect("sender task")
                .expect("sender stops cleanly");
        }
        let _ = self.sandbox.shutdown().await;
        self.env.teardown().await;
    }
}

/// A valid SMS request for `key` to `phone`, attached to `client_id`.
pub fn sms_request(key: &str, phone: &str, client_id: Uuid) -> serde_json::Value {
    serde_json::json!({
        "idempotency_key": key,
        "channel": "sms",
        "kind": "transactional",
        "recipient": { "phone": phone, "name": "Dana" },
        "template": { "name": "welcome", "vars": { "name": "Dana" } },
        "record": { "type": "client", "id": client_id.to_string() },
        "owner": "ana",
        "source": "crm",
        "trigger": "client.onboarded"
    })
}
