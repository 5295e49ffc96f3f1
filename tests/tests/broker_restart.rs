//! Retries waiting in the broker's delay tiers survive a RabbitMQ restart, each coming back
//! exactly once.
//!
//! The outage is a `rabbitmqctl stop_app` / `start_app` of a RabbitMQ node of the test's own
//! ([`PrivateBroker`]), never of the machine's broker that every other test uses. Starting that
//! node takes a few seconds, so this is a test binary of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comms_runtime::runtime::{Handler, Incoming, Outcome, Runtime, run_consumer};
use comms_runtime::shutdown::Shutdown;
use comms_tests::private_broker::PrivateBroker;
use comms_tests::{TestEnv, eventually};

const MESSAGES: usize = 60;
/// A retry parked for this long sits in the 5 s tier, and expires while the broker is down.
const RETRY_AFTER: Duration = Duration::from_secs(5);
const BROKER_DOWN: Duration = Duration::from_secs(8);

/// Asks for one retry of every message, then counts each message's returns.
#[derive(Default)]
struct RetryOnce {
    first_deliveries: Mutex<HashMap<String, u32>>,
    returns: Mutex<HashMap<String, u32>>,
}

impl RetryOnce {
    fn count(map: &Mutex<HashMap<String, u32>>) -> usize {
        map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Handler for RetryOnce {
    async fn handle(&self, message: &Incoming) -> Outcome {
        let key = String::from_utf8_lossy(&message.body).into_owned();
        let seen = if message.retry_attempt == 0 {
            &self.first_deliveries
        } else {
            &self.returns
        };
        if let Ok(mut seen) = seen.lock() {
            *seen.entry(key).or_default() += 1;
        }
        if message.retry_attempt == 0 {
            Outcome::Retry {
                reason: "asked to wait in a delay tier".into(),
                after: Some(RETRY_AFTER),
            }
        } else {
            Outcome::Ack
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_retries_come_back_exactly_once_after_a_broker_restart() {
    let broker = PrivateBroker::start();
    let env = TestEnv::with(&[("COMMS__AMQP__URL", broker.url.as_str())]).await;
    let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
    let queue = env.topology.status_queue();
    let handler = Arc::new(RetryOnce::default());
    let shutdown = Shutdown::new();
    let consumer = tokio::spawn(run_consumer(
        runtime,
        queue.clone(),
        handler.clone(),
        shutdown.clone(),
    ));

    let keys: Vec<String> = (0..MESSAGES).map(|i| format!("retry-{i:03}")).collect();
    for key in &keys {
        env.publish(&queue.exchange, "status.twilio", key.as_bytes())
            .await;
    }
    let all_parked = eventually(Duration::from_secs(30), || async {
        RetryOnce::count(&handler.first_deliveries) == MESSAGES
    })
    .await;
    assert!(
        all_parked,
        "every message was delivered once and asked for a retry"
    );
    assert_eq!(
        RetryOnce::count(&handler.returns),
        0,
        "no retry came back before the restart (the test needs them waiting in the tier)"
    );

    // The retries expire while the broker is down, and are handed back while it recovers.
    broker.stop_app();
    tokio::time::sleep(BROKER_DOWN).await; // the outage itself, not a wait for a condition
    broker.start_app();
    let back = std::time::Instant::now();
    let connected = comms_runtime::metrics::consumer()
        .connected
        .with_label_values(&[&queue.name]);
    let reconnected = eventually(Duration::from_secs(30), || async { connected.get() == 1 }).await;
    assert!(
        reconnected,
        "the consumer reconnects once the broker is back"
    );
    // Reported in docs/reliability.md: the wait is cut short by the broker probe.
    eprintln!(
        "consumer reconnected {} ms after the broker's start_app returned",
        back.elapsed().as_millis()
    );

    let all_back = eventually(Duration::from_secs(90), || async {
        RetryOnce::count(&handler.returns) == MESSAGES
    })
    .await;
    let returns = handler
        .returns
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let missing: Vec<&String> = keys.iter().filter(|k| !returns.contains_key(*k)).collect();
    assert!(
        all_back,
        "{} of {MESSAGES} waiting retries never came back after the restart: {missing:?}",
        missing.len()
    );
    let doubled: Vec<(&String, &u32)> = returns.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        doubled.is_empty(),
        "retries that came back more than once: {doubled:?}"
    );

    shutdown.cancel();
    let _ = consumer.await;
    env.teardown().await;
}
