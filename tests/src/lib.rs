//! Fixtures for the fleet's integration tests, which run against the real RabbitMQ and
//! PostgreSQL of the machine.
//!
//! Every test gets its own database (created and migrated by the same code `commsctl migrate`
//! runs) and its own broker namespace (a random prefix on every exchange and queue), so tests run
//! in parallel without seeing each other, and [`TestEnv::teardown`] removes both.

pub mod binary;
pub mod fleet;
pub mod log_events;
pub mod logs;
pub mod malformed;
pub mod private_broker;
pub mod private_postgres;
pub mod proxy;
pub mod smtp_sink;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comms_runtime::amqp::{Outgoing, Publisher};
use comms_runtime::settings::Settings;
use comms_runtime::topology::{RETRY_TIERS, Topology};
use lapin::options::{BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use secrecy::ExposeSecret;
use sqlx::PgPool;

/// Where the machine's services are; overridable like any setting.
fn base_settings(overrides: &[(&str, &str)]) -> Settings {
    let mut vars: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("COMMS__"))
        .collect();
    for (k, v) in overrides {
        vars.insert((*k).to_string(), (*v).to_string());
    }
    Settings::load_from(&vars).expect("test settings load")
}

/// One isolated database and broker namespace.
pub struct TestEnv {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    pub topology: Topology,
    pub database: String,
    pub publisher: Publisher,
    /// The test's own broker connection (made like every worker's).
    pub connection: lapin::Connection,
    torn_down: bool,
}

impl TestEnv {
    /// A fresh, migrated database and an empty, declared namespace.
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    /// Like [`TestEnv::new`], with extra `COMMS__*` settings.
    pub async fn with(overrides: &[(&str, &str)]) -> Self {
        // `COMMS_TEST_LOG=debug cargo test -- --nocapture` shows the workers' logs.
        if let Ok(level) = std::env::var("COMMS_TEST_LOG") {
            let log = comms_runtime::settings::LogSettings {
                level,
                ..Default::default()
            };
            // Nothing is exported from tests: the handle is not needed.
            let _ = comms_runtime::telemetry::init(&log, "comms-tests");
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("comms_test_{}", &id[..16]);
        let namespace = format!("t{}.", &id[..12]);
        let base = base_settings(&[]);
        let url = base.database.url.expose_secret();
        let server = url.rsplit_once('/').map_or(url, |(server, _)| server);
        let db_url = format!("{server}/{database}");
        let mut all: Vec<(&str, &str)> = vec![
            ("COMMS__DATABASE__URL", db_url.as_str()),
            ("COMMS__AMQP__NAMESPACE", namespace.as_str()),
            ("COMMS__CONSUMER__SHUTDOWN_GRACE", "5s"),
        ];
        all.extend_from_slice(overrides);
        let settings = Arc::new(base_settings(&all));
        comms_domain::schema::migrate(&settings.database)
            .await
            .expect("test database migrates");
        let pool = comms_runtime::db::connect(&settings.database)
            .await
            .expect("test database reachable");
        let topology = Topology::new(namespace);
        let connection = comms_runtime::amqp::connect(&settings.amqp, "comms-tests")
            .await
            .expect("RabbitMQ reachable at COMMS__AMQP__URL");
        let publisher = Publisher::open(&connection).await.expect("channel");
        topology
            .declare(publisher.channel())
            .await
            .expect("topology declares");
        Self {
            settings,
            pool,
            topology,
            database,
            publisher,
            connection,
            torn_down: false,
        }
    }

    /// Publishes `body` to `exchange` with `routing_key`, confirmed.
    pub async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8]) {
        self.publisher
            .publish(Outgoing {
                exchange,
                routing_key,
                body,
                ..Outgoing::default()
            })
            .await
            .expect("publish confirmed");
    }

    /// Publishes `body` to `comms.dead` as the broker does when a message on the SMS send queue
    /// reaches its delivery limit (`x-first-death-*` headers, no runtime origin header).
    pub async fn publish_broker_dead_letter(&self, body: &[u8]) {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-first-death-queue".into(),
            lapin::types::AMQPValue::LongString(
                self.topology.send_queue("sms").name.as_str().into(),
            ),
        );
        headers.insert(
            "x-first-death-reason".into(),
            lapin::types::AMQPValue::LongString("delivery_limit".into()),
        );
        self.publisher
            .publish(Outgoing {
                exchange: &self.topology.dead_exchange(),
                routing_key: "send.sms",
                body,
                headers,
                ..Outgoing::default()
            })
            .await
            .expect("published");
    }

    /// Takes every message now in `queue` (acking them), returning bodies and headers.
    pub async fn drain(&self, queue: &str) -> Vec<(Vec<u8>, FieldTable)> {
        let channel = self.connection.create_channel().await.expect("channel");
        let mut out = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
        {
            let headers = message.properties.headers().clone().unwrap_or_default();
            message
                .delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            out.push((message.delivery.data, headers));
        }
        let _ = channel.close(200, "done".into()).await;
        out
    }

    /// A queue of the test's own, `name`, bound to `exchange` with `routing_key`, to see what is
    /// published there without taking it from the workers. Exclusive: it goes with the test's
    /// connection. Returns its name.
    pub async fn watch(&self, name: &str, exchange: &str, routing_key: &str) -> String {
        let channel = self.connection.create_channel().await.expect("channel");
        channel
            .queue_declare(
                name.into(),
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare");
        channel
            .queue_bind(
                name.into(),
                exchange.into(),
                routing_key.into(),
                lapin::options::QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        let _ = channel.close(200, "done".into()).await;
        name.to_string()
    }

    /// Messages ready in `queue` now.
    pub async fn depth(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.expect("channel");
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue exists");
        let _ = channel.close(200, "done".into()).await;
        declared.message_count()
    }

    /// Deletes the namespace's queues and exchanges and drops the database. A test that fails
    /// before calling this is cleaned up by `Drop` instead, so a failing test never leaves
    /// quorum queues behind to weigh on the broker.
    pub async fn teardown(mut self) {
        self.torn_down = true;
        let _ = self.connection.close(200, "done".into()).await;
        self.pool.close().await;
        remove(
            self.settings.clone(),
            self.topology.clone(),
            self.database.clone(),
        )
        .await;
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        let (settings, topology, database) = (
            self.settings.clone(),
            self.topology.clone(),
            self.database.clone(),
        );
        // Drop cannot await: clean up on a thread with its own runtime.
        let cleanup = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(remove(settings, topology, database));
            }
        });
        let _ = cleanup.join();
    }
}

async fn remove(settings: Arc<Settings>, t: Topology, database: String) {
    if let Ok(connection) =
        comms_runtime::amqp::connect(&settings.amqp, "comms-tests-cleanup").await
    {
        if let Ok(channel) = connection.create_channel().await {
            let mut queues: Vec<String> = t.work_queues().into_iter().map(|q| q.name).collect();
            queues.push(t.dead_queue());
            queues.extend(RETRY_TIERS.iter().map(|tier| t.retry_queue(*tier)));
            for queue in queues {
                let _ = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            for exchange in [
                t.send_exchange(),
                t.provider_exchange(),
                t.digest_exchange(),
                t.incident_exchange(),
                t.sequence_exchange(),
                t.events_exchange(),
                t.control_exchange(),
                t.retry_exchange(),
                t.requeue_exchange(),
                t.dead_exchange(),
            ] {
                let _ = channel
                    .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            }
        }
        let _ = connection.close(200, "done".into()).await;
    }
    let base = base_settings(&[]);
    let url = base.database.url.expose_secret();
    let server = url.rsplit_once('/').map_or(url, |(server, _)| server);
    let admin_url = format!("{server}/postgres");
    let admin_settings = base_settings(&[("COMMS__DATABASE__URL", admin_url.as_str())]);
    if let Ok(admin) = comms_runtime::db::connect(&admin_settings.database).await {
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .execute(&admin)
        .await;
        admin.close().await;
    }
}

/// `settings` as `make run` starts the fleet, on free ports: the worker HTTP server and the
/// gateway each on one, the gateway's public URL its own address.
pub fn on_free_ports(settings: &Settings) -> Settings {
    let mut settings = settings.clone();
    settings.http.listen = free_address();
    settings.gateway.listen = free_address();
    settings.gateway.public_url = format!("http://{}", settings.gateway.listen);
    settings
}

/// A loopback address with a free port (bound, then released for the code under test to bind).
pub fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}

/// A loopback URL that refuses every connection for as long as the returned socket lives: the
/// port is bound but never listened on, so nothing else (another test's server on a port of its
/// own) can take it in the meantime, which a listener bound and dropped would allow.
pub fn refusing_url() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("a free loopback port");
    let url = format!("http://{}", socket.local_addr().expect("its address"));
    (socket, url)
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
/// Tests wait on conditions, never on time.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A connection whose planner never reads a table whole: on a test's tiny table it would rather,
/// so `EXPLAIN` through this one shows the index it can use, which is what it uses on a large one.
pub async fn planner_without_seqscan(
    pool: &sqlx::PgPool,
) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    let mut conn = pool.acquire().await.expect("connection");
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .expect("planner setting");
    conn
}

/// Asserts that `plan` (the lines of an `EXPLAIN` through [`planner_without_seqscan`]) reads
/// `index` and not `avoided`, the index whose walk the query must not fall back to. `reader`
/// names the query.
pub fn assert_plan_reads(reader: &str, plan: &[String], index: &str, avoided: &str) {
    let plan = plan.join("\n");
    assert!(
        plan.contains(index),
        "{reader} does not read {index}:\n{plan}"
    );
    assert!(!plan.contains(avoided), "{reader} walks {avoided}:\n{plan}");
}
