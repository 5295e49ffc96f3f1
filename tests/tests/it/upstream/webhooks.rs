//! Webhooks out: an app's events reach its endpoint signed as docs/upstream.md says, once; a
//! failing endpoint is retried, given up and disabled with a task, then enabled and replayed; an
//! internal URL is refused.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use comms_domain::events::{WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, verify_webhook};
use comms_domain::webhooks::{NewWebhook, register};
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::{TestEnv, eventually};
use tokio::net::TcpListener;

use super::{event, recorded};
use crate::approvals::ctl_with;

const WAIT: Duration = Duration::from_secs(30);

/// One received call: path, timestamp header, signature header, body.
type Call = (String, String, String, Vec<u8>);

#[derive(Clone)]
struct Receiver {
    calls: Arc<Mutex<Vec<Call>>>,
    answer: Arc<AtomicU16>,
}

impl Receiver {
    async fn start(answer: u16) -> (Self, String) {
        let receiver = Self {
            calls: Arc::default(),
            answer: Arc::new(AtomicU16::new(answer)),
        };
        let app = Router::new()
            .route("/{path}", post(record))
            .with_state(receiver.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }
    fn calls(&self, path: &str) -> Vec<Call> {
        self.calls
            .lock()
            .map(|c| c.iter().filter(|call| call.0 == path).cloned().collect())
            .unwrap_or_default()
    }
}

async fn record(
    State(receiver): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    if let Ok(mut calls) = receiver.calls.lock() {
        calls.push((
            path,
            header(WEBHOOK_TIMESTAMP_HEADER),
            header(WEBHOOK_SIGNATURE_HEADER),
            body.to_vec(),
        ));
    }
    StatusCode::from_u16(receiver.answer.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

async fn hook(
    env: &TestEnv,
    app: Option<&str>,
    url: String,
    events: &[&str],
) -> (uuid::Uuid, String) {
    let new = NewWebhook {
        app: app.map(String::from),
        url,
        events: events.iter().map(|e| e.to_string()).collect(),
        owner: "ana".into(),
    };
    let registered = register(&env.pool, &new, true).await.expect("registered");
    (registered.id, registered.secret)
}

fn start_worker(env: &TestEnv) -> (Shutdown, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(comms_events::run(runtime, shutdown.clone()));
    (shutdown, task)
}

#[tokio::test]
async fn an_apps_events_reach_its_webhook_signed_and_once() {
    let env = TestEnv::with(&[("COMMS__EVENTS__WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    let (receiver, base) = Receiver::start(200).await;
    let (crm_hook, secret) = hook(
        &env,
        Some("crm"),
        format!("{base}/crm"),
        &["message.delivered"],
    )
    .await;
    hook(&env, Some("billing"), format!("{base}/billing"), &["*"]).await;
    let (stop, worker) = start_worker(&env);

    let id = recorded(&env.pool, "hook-1", "crm", "delivered").await;
    event(&env.pool, id, "sent", None).await;
    event(&env.pool, id, "delivered", None).await;
    let delivered = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT state FROM comms.webhook_deliveries WHERE webhook_id = $1",
        )
        .bind(crm_hook)
        .fetch_optional(&env.pool)
        .await
        .expect("deliveries")
        .as_deref()
            == Some("delivered")
    };
    assert!(
        eventually(WAIT, delivered).await,
        "the delivery is recorded as delivered"
    );
    let calls = receiver.calls("crm");
    assert_eq!(calls.len(), 1, "only the subscribed type, once");
    let (_, timestamp, signature, body) = &calls[0];
    let timestamp: i64 = timestamp.parse().expect("a Unix timestamp");
    assert!(
        verify_webhook(secret.as_bytes(), timestamp, body, signature),
        "the documented recipe verifies it"
    );
    assert!(!verify_webhook(b"whsec_wrong", timestamp, body, signature));
    let event: serde_json::Value = serde_json::from_slice(body).expect("json");
    assert_eq!(event["type"], "message.delivered");
    assert_eq!(event["message"]["idempotency_key"], "hook-1");
    assert!(
        receiver.calls("billing").is_empty(),
        "another app's webhook hears nothing"
    );
    stop.cancel();
    worker.await.expect("worker").expect("stops cleanly");
    env.teardown().await;
}

#[tokio::test]
async fn a_failing_endpoint_is_given_up_disabled_with_a_task_then_enabled_and_replayed() {
    let env = TestEnv::with(&[
        ("COMMS__EVENTS__WEBHOOK_ALLOW_PRIVATE", "true"),
        ("COMMS__EVENTS__WEBHOOK_MAX_ATTEMPTS", "2"),
        ("COMMS__EVENTS__WEBHOOK_DISABLE_AFTER", "3"),
    ])
    .await;
    let (receiver, base) = Receiver::start(500).await;
    let (id, _) = hook(&env, Some("crm"), format!("{base}/down"), &["*"]).await;
    let (stop, worker) = start_worker(&env);
    let message = recorded(&env.pool, "down-1", "crm", "sent").await;
    event(&env.pool, message, "received", None).await;
    event(&env.pool, message, "sent", None).await;

    let disabled = || async {
        sqlx::query_scalar::<_, String>("SELECT state FROM comms.webhooks WHERE id = $1")
            .bind(id)
            .fetch_one(&env.pool)
            .await
            .expect("webhook")
            == "disabled"
    };
    assert!(
        eventually(WAIT, disabled).await,
        "disabled after 3 failures in a row"
    );
    let task: Option<(String, String)> = sqlx::query_as(
        "SELECT owner, next_action FROM comms.tasks WHERE title LIKE 'Webhook disabled%' AND state = 'open'",
    )
    .fetch_optional(&env.pool)
    .await
    .expect("task");
    let (owner, next) = task.expect("the owner has a task");
    assert_eq!(owner, "ana");
    assert!(
        next.contains(&format!("commsctl webhooks enable {id}")),
        "{next}"
    );
    let states: Vec<(String, i32)> = sqlx::query_as(
        "SELECT state, attempts FROM comms.webhook_deliveries WHERE webhook_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&env.pool)
    .await
    .expect("deliveries");
    // Both events were in flight together, so the call that crossed the threshold may have had
    // one neighbour already on its way; no delivery goes past its 2 attempts.
    assert!(
        states.iter().all(|(_, attempts)| *attempts <= 2),
        "at most 2 attempts per delivery: {states:?}"
    );
    assert!(
        states.iter().any(|(s, a)| s == "failed" && *a == 2),
        "given up after 2 attempts: {states:?}"
    );
    let calls = receiver.calls("down").len();
    assert!(
        (3..=4).contains(&calls),
        "{calls} calls for a threshold of 3"
    );
    receiver.answer.store(200, Ordering::SeqCst);
    ctl_with(&env.settings, &["webhooks", "enable", &id.to_string()])
        .await
        .expect("enable");
    ctl_with(
        &env.settings,
        &[
            "webhooks",
            "replay",
            "--webhook",
            &id.to_string(),
            "--failed",
        ],
    )
    .await
    .expect("replay");
    let replayed = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM comms.webhook_deliveries WHERE webhook_id = $1 AND state = 'delivered'",
        )
        .bind(id)
        .fetch_one(&env.pool)
        .await
        .expect("count")
            >= 1
    };
    assert!(
        eventually(WAIT, replayed).await,
        "the replayed delivery arrives"
    );
    stop.cancel();
    worker.await.expect("worker").expect("stops cleanly");
    env.teardown().await;
}

#[tokio::test]
async fn a_webhook_url_pointing_inside_is_refused() {
    let env = TestEnv::new().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest",
        "http://10.0.0.7/x",
    ] {
        let refused = ctl_with(
            &env.settings,
            &[
                "webhooks",
                "add",
                "--app",
                "crm",
                "--url",
                url,
                "--events",
                "message.failed",
            ],
        )
        .await
        .expect_err(url);
        assert!(
            format!("{refused:#}").contains("loopback, private or link-local"),
            "{url}: {refused:#}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.webhooks")
        .fetch_one(&env.pool)
        .await
        .expect("count");
    assert_eq!(count, 0);
    env.teardown().await;
}
