//! The shared consumer runtime against the real broker: ack after commit, redelivery,
//! poison messages, retries through the delay tiers, and draining on shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use comms_runtime::amqp::header_str;
use comms_runtime::runtime::{Handler, Incoming, Outcome, REASON_HEADER, Runtime, run_consumer};
use comms_runtime::shutdown::Shutdown;
use comms_tests::{TestEnv, eventually};
use serde::Deserialize;
use tokio::sync::Notify;

mod groups;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Deserialize)]
struct Job {
    key: String,
    #[serde(default)]
    panic: bool,
    #[serde(default)]
    fail_times: u32,
}

/// Records each job's key once (idempotent), commits, then optionally waits before returning.
pub(crate) struct Ledger {
    pool: sqlx::PgPool,
    hold_after_commit: Option<Arc<Notify>>,
    committed: Arc<Notify>,
    attempts: AtomicUsize,
    /// The routing key of every delivery, in order.
    routing_keys: std::sync::Mutex<Vec<String>>,
}

impl Ledger {
    pub(crate) fn new(pool: &sqlx::PgPool) -> Self {
        Self {
            pool: pool.clone(),
            hold_after_commit: None,
            committed: Arc::new(Notify::new()),
            attempts: AtomicUsize::new(0),
            routing_keys: std::sync::Mutex::default(),
        }
    }
}

impl Handler for Ledger {
    async fn handle(&self, message: &Incoming) -> Outcome {
        let job: Job = match message.json() {
            Ok(job) => job,
            Err(reason) => return Outcome::reject(reason),
        };
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut keys) = self.routing_keys.lock() {
            keys.push(message.routing_key.clone());
        }
        if job.panic {
            panic!("job {} asked to panic", job.key);
        }
        if message.retry_attempt < job.fail_times {
            return Outcome::retry("transient failure requested by the job");
        }
        let insert = sqlx::query(
            "INSERT INTO ledger (key, deliveries) VALUES ($1, 1)
             ON CONFLICT (key) DO UPDATE SET deliveries = ledger.deliveries + 1",
        )
        .bind(&job.key)
        .execute(&self.pool)
        .await;
        if let Err(e) = insert {
            return Outcome::retry(format!("database: {e}"));
        }
        self.committed.notify_one();
        if let Some(hold) = &self.hold_after_commit {
            hold.notified().await;
        }
        Outcome::Ack
    }
}

pub(crate) async fn env_with_ledger(overrides: &[(&str, &str)]) -> TestEnv {
    let env = TestEnv::with(overrides).await;
    sqlx::query("CREATE TABLE ledger (key text PRIMARY KEY, deliveries int NOT NULL)")
        .execute(&env.pool)
        .await
        .expect("ledger table");
    env
}

pub(crate) async fn ledger_rows(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(&env.pool)
        .await
        .expect("count")
}

fn start(env: &TestEnv, handler: Arc<Ledger>) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
    let queue = env.topology.send_queue("sms");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(run_consumer(runtime, queue, handler, shutdown.clone()));
    (shutdown, task)
}

pub(crate) async fn publish_job(env: &TestEnv, body: &str) {
    env.publish(&env.topology.send_exchange(), "send.sms", body.as_bytes())
        .await;
}

#[tokio::test]
async fn a_message_committed_but_not_acked_comes_back_and_leaves_one_row() {
    let env = env_with_ledger(&[("COMMS__CONSUMER__SHUTDOWN_GRACE", "10ms")]).await;
    let mut stuck = Ledger::new(&env.pool);
    let hold = Arc::new(Notify::new());
    stuck.hold_after_commit = Some(hold.clone());
    let stuck = Arc::new(stuck);
    let (shutdown, task) = start(&env, stuck.clone());
    publish_job(&env, r#"{"key":"only-once"}"#).await;
    stuck.committed.notified().await;
    // The consumer dies after the commit and before the ack.
    shutdown.cancel();
    task.await.expect("consumer task");

    let second = Arc::new(Ledger::new(&env.pool));
    let (shutdown, task) = start(&env, second.clone());
    assert!(
        eventually(WAIT, || async {
            second.attempts.load(Ordering::SeqCst) >= 1
        })
        .await,
        "the unacked message was delivered again"
    );
    let queue = env.topology.send_queue("sms").name;
    assert!(eventually(WAIT, || async { env.depth(&queue).await == 0 }).await);
    shutdown.cancel();
    task.await.expect("consumer task");
    assert_eq!(ledger_rows(&env).await, 1, "idempotency leaves one row");
    let deliveries: i32 = sqlx::query_scalar("SELECT deliveries FROM ledger")
        .fetch_one(&env.pool)
        .await
        .expect("row");
    assert_eq!(deliveries, 2, "the handler really ran twice");
    env.teardown().await;
}

#[tokio::test]
async fn poison_messages_are_parked_with_their_reason_and_consuming_goes_on() {
    let env = env_with_ledger(&[]).await;
    let handler = Arc::new(Ledger::new(&env.pool));
    let (shutdown, task) = start(&env, handler.clone());
    publish_job(&env, r#"{"key":"before"}"#).await;
    publish_job(&env, "this is not json").await;
    publish_job(&env, r#"{"unexpected":"shape"}"#).await;
    publish_job(&env, r#"{"key":"boom","panic":true}"#).await;
    publish_job(&env, r#"{"key":"after"}"#).await;

    let dead = env.topology.dead_queue();
    assert!(eventually(WAIT, || async { env.depth(&dead).await == 3 }).await);
    assert!(eventually(WAIT, || async { ledger_rows(&env).await == 2 }).await);
    shutdown.cancel();
    task.await.expect("consumer task");

    let parked = env.drain(&dead).await;
    let mut reasons: Vec<String> = parked
        .iter()
        .map(|(_, headers)| header_str(headers, REASON_HEADER).expect("reason header"))
        .collect();
    reasons.sort();
    assert!(
        reasons[0].contains("not the expected JSON: expected ident"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("missing field `key`"), "{reasons:?}");
    assert!(
        reasons[2].contains("handler panicked: job boom asked to panic"),
        "{reasons:?}"
    );
    let rejected: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT reason, payload FROM internal.rejected_input ORDER BY id")
            .fetch_all(&env.pool)
            .await
            .expect("rejected rows");
    assert_eq!(rejected.len(), 3);
    // Messages are handled concurrently: find the non-JSON one by its bytes, not its position.
    let (reason, _) = rejected
        .iter()
        .find(|(_, payload)| payload.as_slice() == b"this is not json")
        .expect("the raw payload is kept byte for byte");
    assert!(reason.contains("not the expected JSON"), "{reason}");
    env.teardown().await;
}

#[tokio::test]
async fn a_retry_waits_in_a_delay_tier_and_comes_back() {
    let env = env_with_ledger(&[]).await;
    let handler = Arc::new(Ledger::new(&env.pool));
    let (shutdown, task) = start(&env, handler.clone());
    publish_job(&env, r#"{"key":"flaky","fail_times":1}"#).await;
    assert!(
        eventually(WAIT, || async { ledger_rows(&env).await == 1 }).await,
        "the retried message came back from the tier and succeeded"
    );
    assert_eq!(handler.attempts.load(Ordering::SeqCst), 2);
    // The tier brings it back under its own key; the handler still sees the publisher's.
    assert_eq!(
        *handler.routing_keys.lock().expect("keys"),
        ["send.sms", "send.sms"]
    );
    shutdown.cancel();
    task.await.expect("consumer task");
    env.teardown().await;
}

/// Retries are failures the fleet recovers from, logged at warn (docs/operations.md).
#[tokio::test(flavor = "current_thread")]
async fn a_retry_is_logged_at_warn() {
    let (logs, _guard) = comms_tests::log_events::Captured::start();
    let env = env_with_ledger(&[]).await;
    let handler = Arc::new(Ledger::new(&env.pool));
    let (shutdown, task) = start(&env, handler.clone());
    publish_job(&env, r#"{"key":"flaky","fail_times":1}"#).await;
    assert!(eventually(WAIT, || async { ledger_rows(&env).await == 1 }).await);
    let retries = logs.with_message("retry scheduled");
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0].level, tracing::Level::WARN);
    shutdown.cancel();
    task.await.expect("consumer task");
    env.teardown().await;
}

#[tokio::test]
async fn exhausted_retries_end_in_the_dead_letter_queue() {
    let env = env_with_ledger(&[("COMMS__CONSUMER__MAX_RETRIES", "1")]).await;
    let handler = Arc::new(Ledger::new(&env.pool));
    let (shutdown, task) = start(&env, handler.clone());
    publish_job(&env, r#"{"key":"hopeless","fail_times":99}"#).await;
    let dead = env.topology.dead_queue();
    assert!(eventually(WAIT, || async { env.depth(&dead).await == 1 }).await);
    shutdown.cancel();
    task.await.expect("consumer task");
    let parked = env.drain(&dead).await;
    let reason = header_str(&parked[0].1, REASON_HEADER).expect("reason");
    assert!(
        reason.starts_with("retries exhausted after 1 attempts"),
        "{reason}"
    );
    env.teardown().await;
}

#[tokio::test]
async fn shutdown_with_messages_in_flight_loses_none() {
    let env = env_with_ledger(&[
        ("COMMS__CONSUMER__CONCURRENCY", "4"),
        ("COMMS__CONSUMER__PREFETCH", "8"),
    ])
    .await;
    for i in 0..200 {
        publish_job(&env, &format!(r#"{{"key":"m{i}"}}"#)).await;
    }
    let first = Arc::new(Ledger::new(&env.pool));
    let (shutdown, task) = start(&env, first.clone());
    assert!(eventually(WAIT, || async { ledger_rows(&env).await >= 10 }).await);
    shutdown.cancel();
    task.await.expect("consumer drains and stops");

    let second = Arc::new(Ledger::new(&env.pool));
    let (shutdown, task) = start(&env, second);
    assert!(
        eventually(WAIT, || async { ledger_rows(&env).await == 200 }).await,
        "every message was either finished or returned to the queue"
    );
    shutdown.cancel();
    task.await.expect("consumer task");
    env.teardown().await;
}

#[tokio::test]
async fn a_consumer_reconnects_after_a_broker_outage_and_resumes() {
    let env = env_with_ledger(&[]).await;
    let proxy = comms_tests::proxy::Proxy::start("127.0.0.1:5672".parse().expect("address")).await;
    let mut settings = (*env.settings).clone();
    {
        use secrecy::ExposeSecret;
        let url = settings
            .amqp
            .url
            .expose_secret()
            .replace("127.0.0.1:5672", &proxy.addr.to_string());
        settings.amqp.url = url.into();
    }
    let runtime = Runtime::new(Arc::new(settings), env.pool.clone());
    let health = runtime.health.clone();
    let handler = Arc::new(Ledger::new(&env.pool));
    let shutdown = Shutdown::new();
    let task = tokio::spawn(run_consumer(
        runtime,
        env.topology.send_queue("sms"),
        handler,
        shutdown.clone(),
    ));
    let check = format!("consumer:{}", env.topology.send_queue("sms").name);
    let attached = |want: bool| {
        let (health, check) = (health.clone(), check.clone());
        async move {
            eventually(WAIT, || async {
                health
                    .readiness()
                    .await
                    .checks
                    .get(&check)
                    .is_some_and(|c| c.ok == want)
            })
            .await
        }
    };
    assert!(attached(true).await);
    publish_job(&env, r#"{"key":"before-outage"}"#).await;
    assert!(eventually(WAIT, || async { ledger_rows(&env).await == 1 }).await);

    proxy.cut();
    assert!(attached(false).await, "the lost consumer reports not-ready");
    publish_job(&env, r#"{"key":"during-outage"}"#).await;
    proxy.restore();
    assert!(attached(true).await, "it reconnects by itself");
    assert!(
        eventually(WAIT, || async { ledger_rows(&env).await == 2 }).await,
        "the message published during the outage is consumed after it"
    );
    shutdown.cancel();
    task.await.expect("consumer task");
    env.teardown().await;
}
