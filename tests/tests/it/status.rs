//! The status worker against the real broker and database: every provider status mapped to the
//! canonical delivery state, forward-only and idempotent under out-of-order and duplicate
//! callbacks, callbacks that outrun the sender, suppression, the freshness watchdog, and the
//! whole path end to end (sandbox → gateway → status, with the sender), and bursts decided in
//! delivery groups.

mod burst;
mod content_type;
mod e2e;
mod groups;
mod mapping;
mod partial_loss;
mod reconcile;
mod unknown;
mod watchdog;

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use comms_runtime::amqp::Outgoing;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::{TestEnv, eventually};
use lapin::types::{AMQPValue, FieldTable};
use sqlx::PgPool;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(30);

/// A message row as the sender would have left it.
pub struct Seeded {
    pub id: Uuid,
    pub contact_id: Uuid,
}

/// Inserts a contact with `address` on `channel` and one message to it in `state`.
pub async fn seed_message(
    pool: &PgPool,
    channel: &str,
    address: &str,
    state: &str,
    provider: Option<&str>,
    provider_message_id: Option<&str>,
) -> Seeded {
    let contact_id: Uuid =
        sqlx::query_scalar("INSERT INTO comms.contacts (name) VALUES ('Dana') RETURNING id")
            .fetch_one(pool)
            .await
            .expect("contact");
    sqlx::query(
        "INSERT INTO comms.contact_channels (contact_id, channel, address, consent_state)
         VALUES ($1, $2, $3, 'implied')",
    )
    .bind(contact_id)
    .bind(channel)
    .bind(address)
    .execute(pool)
    .await
    .expect("contact channel");
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address,
             owner, source, trigger, record_type, record_id, template_name, request,
             delivery_state, provider, provider_message_id, dispatched_at)
         VALUES ($1, $2, 'transactional', $3, $4, 'ana', 'crm', 'test', 'client', gen_random_uuid(),
             'welcome', '{}'::jsonb, $5, $6, $7,
             CASE WHEN $5 IN ('sent', 'delivered', 'undelivered', 'failed') THEN now() END)
         RETURNING id",
    )
    .bind(format!("seed-{}", Uuid::new_v4()))
    .bind(channel)
    .bind(contact_id)
    .bind(address)
    .bind(state)
    .bind(provider)
    .bind(provider_message_id)
    .fetch_one(pool)
    .await
    .expect("message");
    Seeded { id, contact_id }
}

/// The content type each provider's status callbacks come with (as the gateway forwards it).
pub fn content_type_of(provider: &str) -> &'static str {
    match provider {
        "twilio" => comms_domain::webhook_body::FORM,
        _ => comms_domain::webhook_body::JSON,
    }
}

/// Publishes a callback to `env` as the gateway does (`status.<provider>`, provider, content type
/// and first-seen headers).
pub async fn publish_callback(env: &TestEnv, provider: &str, body: &[u8]) {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-comms-provider".into(),
        AMQPValue::LongString(provider.into()),
    );
    headers.insert(
        "x-comms-content-type".into(),
        AMQPValue::LongString(crate::status::content_type_of(provider).into()),
    );
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    headers.insert(
        "x-comms-received-at".into(),
        AMQPValue::LongString(now.as_str().into()),
    );
    env.publisher
        .publish(Outgoing {
            exchange: &env.topology.provider_exchange(),
            routing_key: &format!("status.{provider}"),
            body,
            headers,
            ..Outgoing::default()
        })
        .await
        .expect("publish confirmed");
}

/// A status worker consuming a private namespace.
pub struct StatusRig {
    pub env: TestEnv,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl StatusRig {
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        Self::start_on(TestEnv::with(overrides).await)
    }

    /// Starts the worker on `env`, which may already hold queued callbacks.
    pub fn start_on(env: TestEnv) -> Self {
        let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(comms_status::run(runtime, shutdown.clone()));
        Self {
            env,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("status task")
            .expect("status worker stops cleanly");
        self.env.teardown().await;
    }

    /// Publishes a callback as the gateway does (`status.<provider>`, provider and first-seen
    /// headers).
    pub async fn publish(&self, provider: &str, body: &[u8]) {
        publish_callback(&self.env, provider, body).await;
    }

    pub async fn twilio(&self, params: &[(&str, &str)]) {
        self.publish("twilio", crate::gateway::form(params).as_bytes())
            .await;
    }

    pub async fn sendgrid(&self, events: &serde_json::Value) {
        let body = serde_json::to_vec(events).expect("json");
        self.publish("sendgrid", &body).await;
    }

    pub async fn state(&self, id: Uuid) -> String {
        sqlx::query_scalar("SELECT delivery_state FROM comms.messages WHERE id = $1")
            .bind(id)
            .fetch_one(&self.env.pool)
            .await
            .expect("state")
    }

    /// Callbacks applied to a message so far.
    pub async fn callbacks(&self, id: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM comms.delivery_callbacks WHERE message_id = $1")
            .bind(id)
            .fetch_one(&self.env.pool)
            .await
            .expect("callbacks")
    }

    /// Waits until `count` callbacks of the message were applied.
    pub async fn applied(&self, id: Uuid, count: i64) -> bool {
        eventually(WAIT, || async { self.callbacks(id).await >= count }).await
    }

    /// `(failure_reason, next_action, opt_out_state)` of a message.
    pub async fn outcome(&self, id: Uuid) -> (Option<String>, Option<String>, String) {
        sqlx::query_as(
            "SELECT failure_reason, next_action, opt_out_state FROM comms.messages WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.env.pool)
        .await
        .expect("message")
    }

    pub async fn consent(&self, contact_id: Uuid, channel: &str) -> String {
        sqlx::query_scalar(
            "SELECT consent_state FROM comms.contact_channels WHERE contact_id = $1 AND channel = $2",
        )
        .bind(contact_id)
        .bind(channel)
        .fetch_one(&self.env.pool)
        .await
        .expect("consent")
    }

    pub async fn tasks(&self, id: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM comms.tasks WHERE message_id = $1")
            .bind(id)
            .fetch_one(&self.env.pool)
            .await
            .expect("tasks")
    }

    pub async fn timeline(&self, id: Uuid) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT event_type FROM comms.message_events WHERE message_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.env.pool)
        .await
        .expect("timeline")
    }
}
