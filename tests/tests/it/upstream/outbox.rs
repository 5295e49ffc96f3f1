//! The transactional outbox: every recorded change has exactly one outbox row, written in the
//! change's own transaction, and reaches `comms.events` at least once — also when the relay is
//! killed with -9 before or while it publishes.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::Duration;

use comms_domain::events::LifecycleEvent;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::{TestEnv, eventually};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{event, recorded};

const WAIT: Duration = Duration::from_secs(30);

/// A queue of the test's own on `comms.events`, collecting every event published.
async fn listen(env: &TestEnv) -> lapin::Consumer {
    let queue = env
        .watch(
            &format!("{}test.events", env.topology.webhooks_queue().name),
            &env.topology.events_exchange(),
            "#",
        )
        .await;
    let channel = env.connection.create_channel().await.expect("channel");
    channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume")
}

/// Collects events until `expected` distinct ids arrived; returns how often each came.
async fn collect(
    consumer: &mut lapin::Consumer,
    expected: usize,
) -> HashMap<Uuid, (u32, LifecycleEvent)> {
    let mut seen: HashMap<Uuid, (u32, LifecycleEvent)> = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < expected {
        let next = tokio::time::timeout_at(deadline, consumer.next()).await;
        let Ok(Some(Ok(delivery))) = next else { break };
        let event: LifecycleEvent =
            serde_json::from_slice(&delivery.data).expect("a comms.event.v1");
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
        seen.entry(event.event_id).or_insert((0, event)).0 += 1;
    }
    seen
}

async fn outbox(env: &TestEnv) -> Vec<(Uuid, String, bool)> {
    sqlx::query_as(
        "SELECT event_id, routing_key, published_at IS NOT NULL FROM comms.event_outbox ORDER BY id",
    )
    .fetch_all(&env.pool)
    .await
    .expect("outbox")
}

#[tokio::test]
async fn every_recorded_change_has_one_outbox_row_and_reaches_comms_events() {
    let env = TestEnv::new().await;
    let mut consumer = listen(&env).await;
    let id = recorded(&env.pool, "evt-1", "crm", "delivered").await;
    for kind in ["received", "sent", "delivered"] {
        event(&env.pool, id, kind, None).await;
    }
    let task: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.tasks (owner, title, next_action, message_id, due_at)
         VALUES ('ana', 'Reply needs a response', 'answer it', $1, now() - interval '1 minute') RETURNING id",
    )
    .bind(id)
    .fetch_one(&env.pool)
    .await
    .expect("task");
    assert_eq!(
        comms_events::overdue::check(&env.pool)
            .await
            .expect("overdue"),
        1
    );
    assert_eq!(
        comms_events::overdue::check(&env.pool)
            .await
            .expect("again"),
        0,
        "overdue once"
    );
    sqlx::query("UPDATE comms.tasks SET state = 'done', done_at = now() WHERE id = $1")
        .bind(task)
        .execute(&env.pool)
        .await
        .expect("close");
    let rows = outbox(&env).await;
    let keys: Vec<&str> = rows.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "message.received",
            "message.sent",
            "message.delivered",
            "task.opened",
            "task.overdue",
            "task.closed"
        ],
        "exactly one outbox row per change, in order"
    );

    let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
    let shutdown = Shutdown::new();
    let relay = tokio::spawn(comms_events::relay::run(runtime, shutdown.clone()));
    let seen = collect(&mut consumer, rows.len()).await;
    assert_eq!(seen.len(), rows.len(), "every event was published");
    let (_, delivered) = seen.get(&rows[2].0).expect("message.delivered published");
    assert_eq!(delivered.app.as_deref(), Some("crm"));
    let message = delivered.message.as_ref().expect("the message");
    assert_eq!(
        (
            message.idempotency_key.as_str(),
            message.delivery_state.as_str()
        ),
        ("evt-1", "delivered")
    );
    let (_, closed) = seen.get(&rows[5].0).expect("task.closed published");
    assert_eq!(closed.task.as_ref().map(|t| t.state.as_str()), Some("done"));
    let text =
        serde_json::to_string(&seen.values().map(|(_, e)| e).collect::<Vec<_>>()).expect("json");
    assert!(
        !text.contains("+14155552671") && !text.contains("your code is") && !text.contains("Dana"),
        "no personal content"
    );
    assert!(
        eventually(WAIT, || async {
            outbox(&env)
                .await
                .iter()
                .all(|(_, _, published)| *published)
        })
        .await,
        "the relay marks what the broker confirmed"
    );
    shutdown.cancel();
    relay.await.expect("relay stops");
    env.teardown().await;
}

/// The worker process, killed with -9 when dropped (also when an assertion fails).
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(env: &TestEnv) -> Worker {
    Worker(
        Command::new(env!("CARGO_BIN_EXE_events-worker"))
            .env(
                "COMMS__DATABASE__URL",
                env.settings.database.url.expose_secret(),
            )
            .env("COMMS__AMQP__URL", env.settings.amqp.url.expose_secret())
            .env("COMMS__AMQP__NAMESPACE", &env.settings.amqp.namespace)
            .env("COMMS__HTTP__LISTEN", "127.0.0.1:0")
            .env("COMMS__EVENTS__RELAY_BATCH", "1")
            .env("COMMS__EVENTS__RELAY_INTERVAL", "10ms")
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("the events worker starts"),
    )
}

#[tokio::test]
async fn a_relay_killed_with_minus_9_loses_no_event() {
    let env = TestEnv::new().await;
    let mut consumer = listen(&env).await;
    // Changes committed before any relay runs: the worst case of a crash between commit and publish.
    let id = recorded(&env.pool, "kill-1", "crm", "sent").await;
    for i in 0..200 {
        event(
            &env.pool,
            id,
            if i % 2 == 0 {
                "retry_scheduled"
            } else {
                "dispatching"
            },
            None,
        )
        .await;
    }
    let total = outbox(&env).await.len();
    assert_eq!(total, 200);

    let worker = spawn_worker(&env);
    let started = eventually(WAIT, || async {
        outbox(&env)
            .await
            .iter()
            .any(|(_, _, published)| *published)
    })
    .await;
    assert!(started, "the relay publishes");
    drop(worker); // SIGKILL: no drain, no cleanup
    let pending = outbox(&env).await.iter().filter(|(_, _, p)| !*p).count();
    assert!(
        pending > 0,
        "killed mid-way (raise the event count if this machine is too fast)"
    );

    let worker = spawn_worker(&env);
    let seen = collect(&mut consumer, total).await;
    drop(worker);
    let ids: Vec<Uuid> = outbox(&env).await.iter().map(|(id, _, _)| *id).collect();
    let missing = ids.iter().filter(|id| !seen.contains_key(id)).count();
    assert_eq!(
        missing, 0,
        "every committed event reached comms.events at least once"
    );
    env.teardown().await;
}

#[tokio::test]
async fn an_accepted_incident_event_becomes_an_incident_event_naming_its_clients() {
    let env = TestEnv::new().await;
    let client: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.clients (name, owner) VALUES ('Acme', 'ana') RETURNING id",
    )
    .fetch_one(&env.pool)
    .await
    .expect("client");
    // As the incident worker records one: the event first, then the clients it adds, one transaction.
    let incident = Uuid::new_v4();
    let mut tx = env.pool.begin().await.expect("tx");
    sqlx::query(
        "INSERT INTO comms.incidents (id, title, severity, owner, sequence) VALUES ($1, 'db-7 (internal)', 'major', 'ana', 1)",
    )
    .bind(incident)
    .execute(&mut *tx)
    .await
    .expect("incident");
    sqlx::query(
        "INSERT INTO comms.incident_events (incident_id, sequence, event_type, title, severity,
             facts_verified, owner, source, occurred_at, affected)
         VALUES ($1, 1, 'declared', 'db-7 (internal)', 'major', false, 'ana', 'statuspage', now(), '{}')",
    )
    .bind(incident)
    .execute(&mut *tx)
    .await
    .expect("event");
    sqlx::query(
        "INSERT INTO comms.incident_clients (incident_id, client_id, added_at_sequence) VALUES ($1, $2, 1)",
    )
    .bind(incident)
    .bind(client)
    .execute(&mut *tx)
    .await
    .expect("client link");
    tx.commit().await.expect("commit");

    let rows: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT routing_key, payload FROM comms.event_outbox ORDER BY id")
            .fetch_all(&env.pool)
            .await
            .expect("outbox");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "incident.declared");
    let event: LifecycleEvent =
        serde_json::from_value(rows[0].1.clone()).expect("a comms.event.v1");
    let snapshot = event.incident.expect("the incident");
    assert_eq!(
        (snapshot.id, snapshot.sequence, snapshot.clients),
        (incident, 1, vec![client])
    );
    assert!(!rows[0].1.to_string().contains("db-7"), "never the title");
    env.teardown().await;
}

#[tokio::test]
async fn a_digests_state_changes_become_digest_events() {
    let env = TestEnv::new().await;
    let period: Uuid = sqlx::query_scalar(
        "WITH c AS (INSERT INTO comms.clients (name, owner) VALUES ('Acme', 'ana') RETURNING id),
              r AS (INSERT INTO comms.reports (client_id, title, owner) SELECT id, 'March', 'ana' FROM c RETURNING id)
         INSERT INTO comms.report_periods (report_id, starts_on, ends_on, state)
         SELECT id, '2026-03-01', '2026-03-31', 'closed' FROM r RETURNING id",
    )
    .fetch_one(&env.pool)
    .await
    .expect("period");
    let digest: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.digests (period_id, revision, client_id, owner, source, state, facts,
             content_hash, built_at)
         SELECT p.id, 1, r.client_id, 'ana', 'schedule', 'awaiting_approval', '{\"revenue\": 1234}',
             repeat('a', 64), now()
         FROM comms.report_periods p JOIN comms.reports r ON r.id = p.report_id WHERE p.id = $1
         RETURNING id",
    )
    .bind(period)
    .fetch_one(&env.pool)
    .await
    .expect("digest");
    sqlx::query("UPDATE comms.digests SET state = 'approved', approved_by = 'ana', approved_at = now() WHERE id = $1")
        .bind(digest)
        .execute(&env.pool)
        .await
        .expect("approve");
    sqlx::query("UPDATE comms.digests SET approved_by = 'ana' WHERE id = $1")
        .bind(digest)
        .execute(&env.pool)
        .await
        .expect("an update that changes no state");

    let rows: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT routing_key, payload FROM comms.event_outbox ORDER BY id")
            .fetch_all(&env.pool)
            .await
            .expect("outbox");
    let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["digest.built", "digest.approved"],
        "one event per state change"
    );
    let event: LifecycleEvent =
        serde_json::from_value(rows[1].1.clone()).expect("a comms.event.v1");
    let snapshot = event.digest.expect("the digest");
    assert_eq!(
        (snapshot.id, snapshot.period_id, snapshot.state.as_str()),
        (digest, period, "approved")
    );
    assert!(!rows[1].1.to_string().contains("1234"), "never the figures");
    env.teardown().await;
}
