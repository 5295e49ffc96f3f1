//! The whole path with real parts: an app enqueues over HTTP, the sender dispatches to the
//! sandbox provider, the sandbox posts signed callbacks to the gateway, the gateway publishes
//! them, and the status worker moves the message to its final state.

use std::sync::Arc;

use comms_domain::api_keys::{self, Role};
use comms_runtime::clock::SystemClock;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_sandbox::{CallbackStatus, FaultSpec, RunningSandbox, SandboxConfig};
use comms_tests::fleet::sms_request;
use comms_tests::{TestEnv, eventually};
use serde_json::json;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::WAIT;

struct Fleet {
    env: TestEnv,
    sandbox: RunningSandbox,
    gateway_url: String,
    client_id: Uuid,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Fleet {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let gateway_url = format!("http://{}", listener.local_addr().expect("addr"));
        let config = SandboxConfig::generated()
            .expect("key")
            .with_gateway(gateway_url.clone());
        let public_key = config.sendgrid_signer.public_key_base64().to_string();
        let sandbox = RunningSandbox::start(config).await.expect("sandbox");
        let base = sandbox.base_url();
        let callback = format!("{gateway_url}/webhooks/twilio/status");
        let env = TestEnv::with(&[
            ("COMMS__PROVIDERS__TWILIO__BASE_URL", base.as_str()),
            ("COMMS__PROVIDERS__SENDGRID__BASE_URL", base.as_str()),
            (
                "COMMS__PROVIDERS__TWILIO__AUTH_TOKEN",
                comms_sandbox::DEFAULT_TWILIO_AUTH_TOKEN,
            ),
            (
                "COMMS__PROVIDERS__TWILIO__STATUS_CALLBACK",
                callback.as_str(),
            ),
            (
                "COMMS__PROVIDERS__SENDGRID__WEBHOOK_PUBLIC_KEY",
                public_key.as_str(),
            ),
            ("COMMS__GATEWAY__PUBLIC_URL", gateway_url.as_str()),
            ("COMMS__RATE__SMS__PER_SECOND", "0"),
            ("COMMS__RATE__EMAIL__PER_SECOND", "0"),
            ("COMMS__SENDER__PROVIDER_TIMEOUT", "5s"),
        ])
        .await;
        let client_id: Uuid = sqlx::query_scalar(
            "INSERT INTO comms.clients (name, owner) VALUES ('Acme Dental', 'ana') RETURNING id",
        )
        .fetch_one(&env.pool)
        .await
        .expect("client");
        for (name, channel, subject, body) in [
            ("welcome", "sms", None, "Hi {{ name }}, welcome aboard!"),
            (
                "report",
                "email",
                Some("Your report"),
                "Hello, it is ready.",
            ),
        ] {
            sqlx::query(
                "INSERT INTO comms.templates (name, version, channel, subject, body, state, created_by, approved_by, approved_at)
                 VALUES ($1, 1, $2, $3, $4, 'approved', 'test', 'ana', now())",
            )
            .bind(name)
            .bind(channel)
            .bind(subject)
            .bind(body)
            .execute(&env.pool)
            .await
            .expect("template");
        }
        let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
        let shutdown = Shutdown::new();
        let tasks = vec![
            tokio::spawn(comms_gateway::serve(
                listener,
                runtime.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(comms_status::run(runtime.clone(), shutdown.clone())),
            tokio::spawn(comms_sender::run(
                runtime,
                Arc::new(SystemClock),
                shutdown.clone(),
            )),
        ];
        Self {
            env,
            sandbox,
            gateway_url,
            client_id,
            shutdown,
            tasks,
        }
    }

    async fn enqueue(&self, auth: &str, request: &serde_json::Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/messages", self.gateway_url))
            .header("authorization", auth)
            .json(request)
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(response.status(), 202);
    }

    async fn message(&self, key: &str) -> Option<(String, Option<String>, String)> {
        sqlx::query_as(
            "SELECT delivery_state, failure_reason, opt_out_state FROM comms.messages WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.env.pool)
        .await
        .expect("message")
    }

    async fn reaches(&self, key: &str, state: &str) -> bool {
        eventually(WAIT, || async {
            self.message(key).await.is_some_and(|(s, _, _)| s == state)
        })
        .await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.expect("task").expect("worker stops cleanly");
        }
        let _ = self.sandbox.shutdown().await;
        self.env.teardown().await;
    }
}

fn email_request(key: &str, email: &str, client_id: Uuid) -> serde_json::Value {
    json!({
        "idempotency_key": key,
        "channel": "email",
        "kind": "transactional",
        "recipient": { "email": email },
        "template": { "name": "report", "vars": {} },
        "record": { "type": "client", "id": client_id.to_string() },
        "owner": "ana", "source": "reporting", "trigger": "report.published"
    })
}

#[tokio::test]
async fn an_sms_enqueued_over_http_is_driven_to_delivered_by_signed_callbacks() {
    let fleet = Fleet::start().await;
    let auth = format!(
        "Bearer {}",
        api_keys::create(&fleet.env.pool, "crm", Role::Enqueue)
            .await
            .expect("key")
            .key
    );
    fleet
        .enqueue(
            &auth,
            &sms_request("e2e-sms", "+14155552671", fleet.client_id),
        )
        .await;
    assert!(
        fleet.reaches("e2e-sms", "delivered").await,
        "{:?}",
        fleet.message("e2e-sms").await
    );
    let statuses: Vec<String> = sqlx::query_scalar(
        "SELECT cb.status FROM comms.delivery_callbacks cb JOIN comms.messages m ON m.id = cb.message_id
         WHERE m.idempotency_key = 'e2e-sms' ORDER BY cb.id",
    )
    .fetch_all(&fleet.env.pool)
    .await
    .expect("callbacks");
    assert!(statuses.contains(&"delivered".to_string()), "{statuses:?}");
    // Every callback is kept with its raw payload. A `sent` callback that outran the sender's
    // record of the dispatch is applied on its retry, possibly after `delivered`: compare the two
    // counts in one snapshot, until that retry has landed too.
    let every_callback_has_its_payload = eventually(WAIT, || async {
        let (callbacks, payloads): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM comms.delivery_callbacks cb JOIN comms.messages m ON m.id = cb.message_id
                     WHERE m.idempotency_key = 'e2e-sms'),
                    (SELECT count(*) FROM internal.provider_payloads p JOIN comms.messages m ON m.id = p.message_id
                     WHERE m.idempotency_key = 'e2e-sms')",
        )
        .fetch_one(&fleet.env.pool)
        .await
        .expect("counts");
        callbacks >= 2 && callbacks == payloads
    })
    .await;
    assert!(
        every_callback_has_its_payload,
        "sent and delivered callbacks, each with its payload"
    );

    // An undelivered SMS ends undelivered, with the carrier's reason and a next action.
    fleet
        .sandbox
        .client()
        .add_fault(&FaultSpec {
            recipient: Some("+14155552672".into()),
            callback_status: Some(CallbackStatus::Undelivered),
            error_code: Some(30003),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    fleet
        .enqueue(
            &auth,
            &sms_request("e2e-undelivered", "+14155552672", fleet.client_id),
        )
        .await;
    assert!(fleet.reaches("e2e-undelivered", "undelivered").await);
    let (_, reason, _) = fleet.message("e2e-undelivered").await.expect("message");
    assert!(reason.is_some_and(|r| r.contains("30003")));
    fleet.stop().await;
}

#[tokio::test]
async fn a_hard_bounce_suppresses_the_address_and_the_next_send_is_blocked() {
    let fleet = Fleet::start().await;
    let email = "bounces@example.com";
    fleet
        .sandbox
        .client()
        .add_fault(&FaultSpec {
            recipient: Some(email.into()),
            callback_status: Some(CallbackStatus::Bounce),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    let first =
        serde_json::to_vec(&email_request("e2e-mail-1", email, fleet.client_id)).expect("json");
    fleet
        .env
        .publish(&fleet.env.topology.send_exchange(), "send.email", &first)
        .await;
    assert!(
        fleet.reaches("e2e-mail-1", "failed").await,
        "{:?}",
        fleet.message("e2e-mail-1").await
    );
    let (_, reason, opt_out) = fleet.message("e2e-mail-1").await.expect("message");
    assert!(reason.is_some_and(|r| r.contains("bounce")));
    assert_eq!(opt_out, "suppressed");
    let consent: String = sqlx::query_scalar(
        "SELECT consent_state FROM comms.contact_channels WHERE channel = 'email' AND address = $1",
    )
    .bind(email)
    .fetch_one(&fleet.env.pool)
    .await
    .expect("consent");
    assert_eq!(consent, "suppressed");
    let tasks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.tasks t JOIN comms.messages m ON m.id = t.message_id
         WHERE m.idempotency_key = 'e2e-mail-1' AND t.state = 'open'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("tasks");
    assert!(tasks >= 1);

    // The next message to that address is refused before it reaches the provider.
    let second =
        serde_json::to_vec(&email_request("e2e-mail-2", email, fleet.client_id)).expect("json");
    fleet
        .env
        .publish(&fleet.env.topology.send_exchange(), "send.email", &second)
        .await;
    assert!(fleet.reaches("e2e-mail-2", "blocked").await);
    let (_, reason, _) = fleet.message("e2e-mail-2").await.expect("message");
    assert_eq!(reason.as_deref(), Some("suppressed"));
    let sent_to = fleet
        .sandbox
        .client()
        .messages_to(email)
        .await
        .expect("sandbox");
    assert_eq!(sent_to.len(), 1);
    fleet.stop().await;
}
