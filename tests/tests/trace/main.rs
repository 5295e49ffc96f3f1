//! A message's whole life is one trace, through the whole fleet (`comms-fleet --with-sandbox`,
//! as `make run` starts it) exporting to a fake OTLP collector: enqueued over HTTP, sent, the
//! sandbox's signed delivery callback, the status update, a reply; a message held by a pause and
//! released on resume; a message that waited for an approval. The same run's `/metrics` shows the
//! enqueue-to-final time and the rate-limit wait of those sends.
//!
//! Its own test binary: the tracing subscriber and the span exporter are global to a process.

mod collector;

use std::time::Duration;

use comms_domain::api_keys::{self, Role};
use comms_runtime::settings::LogSettings;
use comms_runtime::shutdown::Shutdown;
use comms_sandbox::{InboundSpec, SandboxClient};
use comms_tests::fleet::sms_request;
use comms_tests::{TestEnv, eventually, free_address, on_free_ports};
use serde_json::json;
use uuid::Uuid;

use collector::Collector;

const WAIT: Duration = Duration::from_secs(30);
/// The trace an upstream app started before it called `POST /v1/messages`.
const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

struct Fleet {
    env: TestEnv,
    http: reqwest::Client,
    gateway: String,
    metrics: String,
    sandbox: SandboxClient,
    client_id: Uuid,
}

impl Fleet {
    async fn key(&self, name: &str, role: Role) -> String {
        let created = api_keys::create(&self.env.pool, name, role)
            .await
            .expect("key");
        format!("Bearer {}", created.key)
    }

    async fn post(&self, auth: &str, path: &str, body: &serde_json::Value) -> u16 {
        self.post_with(auth, path, body, None).await
    }

    async fn post_with(
        &self,
        auth: &str,
        path: &str,
        body: &serde_json::Value,
        traceparent: Option<&str>,
    ) -> u16 {
        let mut request = self
            .http
            .post(format!("{}{path}", self.gateway))
            .header("authorization", auth)
            .json(body);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request
            .send()
            .await
            .expect("gateway answers")
            .status()
            .as_u16()
    }

    async fn message(&self, key: &str) -> Option<(Uuid, String, String)> {
        sqlx::query_as(
            "SELECT id, delivery_state, reply_state FROM comms.messages WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.env.pool)
        .await
        .expect("message")
    }

    /// Waits until the message `key` is in `state`; returns its id.
    async fn reaches(&self, key: &str, state: &str) -> Uuid {
        let reached = eventually(WAIT, || async {
            self.message(key).await.is_some_and(|(_, s, _)| s == state)
        })
        .await;
        let found = self.message(key).await;
        assert!(reached, "{key} reaches {state}: {found:?}");
        found.map(|(id, ..)| id).unwrap_or_default()
    }

    async fn scrape(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.metrics))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text")
    }
}

/// The value of the sample `series` (name and labels exactly as rendered), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_messages_whole_life_is_one_trace() {
    let collector = Collector::start().await;
    let log = LogSettings {
        otlp_endpoint: Some(collector.endpoint.clone()),
        ..LogSettings::default()
    };
    let telemetry = comms_runtime::telemetry::init(&log, "comms-fleet");
    assert!(telemetry.is_exporting());

    // A rate limit, so the sends have a rate-limit wait to observe.
    let env = TestEnv::with(&[("COMMS__RATE__SMS__PER_SECOND", "50")]).await;
    let client_id: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.clients (name, owner) VALUES ('Acme Dental', 'ana') RETURNING id",
    )
    .fetch_one(&env.pool)
    .await
    .expect("client");
    sqlx::query(
        "INSERT INTO comms.templates (name, version, channel, body, state, created_by, approved_by, approved_at)
         VALUES ('welcome', 1, 'sms', 'Hi {{ name }}, welcome aboard!', 'approved', 'ana', 'ana', now())",
    )
    .execute(&env.pool)
    .await
    .expect("template");

    // As `make run` starts it, with Twilio's status callback set to the gateway's webhook.
    let mut settings = on_free_ports(&env.settings);
    settings.providers.twilio.status_callback = Some(format!(
        "{}/webhooks/twilio/status",
        settings.gateway.public_url
    ));
    let sandbox_listen = free_address();
    let options = comms_fleet::Options {
        with_sandbox: true,
        sandbox_listen,
        worker: Default::default(),
    };
    let fleet = Fleet {
        http: reqwest::Client::new(),
        gateway: settings.gateway.public_url.clone(),
        metrics: format!("http://{}", settings.http.listen),
        sandbox: SandboxClient::new(format!("http://{sandbox_listen}")),
        client_id,
        env,
    };
    let shutdown = Shutdown::new();
    let running = tokio::spawn(comms_fleet::run(settings, options, shutdown.clone()));
    assert!(
        eventually(WAIT, || async { fleet.sandbox.messages().await.is_ok() }).await,
        "the sandbox is up"
    );
    let app = fleet.key("crm-app", Role::Enqueue).await;
    let oncall = fleet.key("pager", Role::Oncall).await;
    let owner = fleet.key("dashboard", Role::Owner).await;

    // 1. Enqueued over HTTP inside the caller's own trace, delivered, then answered.
    let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let first = sms_request("trace-1", "+14155550101", fleet.client_id);
    let status = fleet
        .post_with(&app, "/v1/messages", &first, Some(&caller))
        .await;
    assert_eq!(status, 202);
    let first_id = fleet.reaches("trace-1", "delivered").await;
    let reply = InboundSpec {
        from: "+14155550101".into(),
        body: "Thanks, see you Tuesday".into(),
        to: None,
    };
    fleet.sandbox.inbound(&reply).await.expect("reply sent");
    assert!(
        eventually(WAIT, || async {
            fleet
                .message("trace-1")
                .await
                .is_some_and(|(_, _, reply)| reply == "replied")
        })
        .await,
        "the reply is captured"
    );

    // 2. Held by a pause, released on resume, delivered.
    let pause = json!({ "scope": "global", "reason": "trace test" });
    assert_eq!(fleet.post(&oncall, "/v1/pause", &pause).await, 201);
    assert!(
        eventually(WAIT, || async {
            sample(
                &fleet.scrape().await,
                "comms_pause_active{scope=\"global\"}",
            ) == Some(1.0)
        })
        .await,
        "the fleet applied the pause"
    );
    let second = sms_request("trace-2", "+14155550102", fleet.client_id);
    assert_eq!(fleet.post(&app, "/v1/messages", &second).await, 202);
    fleet.reaches("trace-2", "held").await;
    assert_eq!(fleet.post(&oncall, "/v1/resume", &pause).await, 200);
    let second_id = fleet.reaches("trace-2", "delivered").await;

    // 3. Waits for an owner's approval, approved over the admin API, delivered.
    let mut third = sms_request("trace-3", "+14155550103", fleet.client_id);
    third["contains_roi"] = json!(true);
    assert_eq!(fleet.post(&app, "/v1/messages", &third).await, 202);
    let third_id = fleet.reaches("trace-3", "awaiting_approval").await;
    let decision = json!({ "decided_by": "ana" });
    let path = format!("/v1/approvals/{third_id}/approve");
    assert_eq!(fleet.post(&owner, &path, &decision).await, 200);
    fleet.reaches("trace-3", "delivered").await;

    // The metrics of those sends, scraped as Prometheus would.
    let metrics = fleet.scrape().await;
    let delivered = "comms_enqueue_to_final_seconds_count{channel=\"sms\",state=\"delivered\"}";
    assert_eq!(sample(&metrics, delivered), Some(3.0), "{metrics}");
    let total = sample(
        &metrics,
        "comms_enqueue_to_final_seconds_sum{channel=\"sms\",state=\"delivered\"}",
    )
    .unwrap_or_default();
    assert!(
        total > 0.0 && total < 3.0 * WAIT.as_secs_f64() * 4.0,
        "enqueue to delivered took {total}s for the three"
    );
    let waits = sample(
        &metrics,
        "comms_rate_limit_wait_seconds_count{channel=\"sms\"}",
    )
    .unwrap_or_default();
    assert!(
        waits >= 3.0,
        "every dispatch went through the limit: {waits}"
    );
    let waited = sample(
        &metrics,
        "comms_rate_limit_wait_seconds_sum{channel=\"sms\"}",
    )
    .unwrap_or(-1.0);
    assert!(
        (0.0..waits).contains(&waited),
        "a few sends under 50/s wait well under a second each: {waited}s"
    );

    shutdown.cancel();
    running
        .await
        .expect("fleet task")
        .expect("the fleet stops cleanly");
    // Flushing on shutdown sends what is still batched: nothing is waited for by time.
    telemetry.finish().await;

    // 1: every step of its life in the caller's trace.
    let names = collector.names(CALLER_TRACE);
    for step in [
        "enqueue",
        "message",
        "provider.call",
        "provider.callback",
        "delivery.status",
        "reply",
    ] {
        assert!(names.contains(step), "{step} is in the trace: {names:?}");
    }
    let spans = collector.in_trace(CALLER_TRACE);
    let enqueue = spans.iter().find(|s| s.name == "enqueue");
    assert_eq!(
        enqueue.map(|s| s.parent_span_id.as_str()),
        Some(CALLER_SPAN),
        "the gateway continues the caller's trace"
    );
    let first_id = first_id.to_string();
    for step in ["provider.call", "delivery.status", "reply"] {
        assert!(
            spans
                .iter()
                .any(|s| s.name == step && s.attribute("message.id") == Some(first_id.as_str())),
            "{step} names the message"
        );
    }
    // The status update and the reply are handled in their callbacks' traces and link to them.
    for step in ["delivery.status", "reply"] {
        assert!(
            spans
                .iter()
                .filter(|s| s.name == step)
                .all(|s| !s.linked_traces.is_empty()),
            "{step} links to the trace it was handled in"
        );
    }

    // 2 and 3: the gateway started each trace, and the release is a step of it.
    for (id, release) in [
        (second_id.to_string(), "pause.release"),
        (third_id.to_string(), "approval.release"),
    ] {
        let trace = collector
            .trace_of(release, &id)
            .unwrap_or_else(|| panic!("{release} of {id} exported"));
        let spans = collector.in_trace(&trace);
        let roots: Vec<&str> = spans
            .iter()
            .filter(|s| s.parent_span_id.is_empty())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(roots, ["enqueue"], "one trace from the enqueue on");
        let names = collector.names(&trace);
        for step in [
            "message",
            "provider.call",
            "provider.callback",
            "delivery.status",
        ] {
            assert!(
                names.contains(step),
                "{step} is in {release}'s trace: {names:?}"
            );
        }
        if release == "approval.release" {
            assert!(names.contains("approval.decision"), "{names:?}");
        }
    }
    fleet.env.teardown().await;
}
