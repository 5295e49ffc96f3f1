//! The bench's own database, broker namespace and sandbox, and the traffic it generates.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use comms_runtime::settings::Settings;
use comms_runtime::topology::{RETRY_TIERS, Topology};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::procs::{self, Worker};

/// How many messages under a key prefix (`$1`), recorded at or after `$2`, are `sent` now.
pub const SENT_SINCE: &str = "SELECT count(*) FROM comms.messages
     WHERE delivery_state = 'sent' AND created_at >= $2 AND idempotency_key LIKE $1";

/// How long [`Bench::wait_sent`] waits before counting again: half the time the rest should take
/// at the rate seen so far, between 200 ms and 5 s. Every figure is taken from the database's
/// own timestamps, so when the wait notices the end does not move it; but each count reads every
/// message sent so far: counting every 200 ms through a 100 000-message release took 15% of the
/// database's statement time (`pg_stat_statements`, docs/benchmarks.md).
fn next_poll(elapsed: Duration, sent: usize, count: usize) -> Duration {
    let (floor, ceiling) = (Duration::from_millis(200), Duration::from_secs(5));
    if sent == 0 {
        return floor;
    }
    let rest = elapsed.mul_f64((count - sent.min(count)) as f64 / sent as f64);
    (rest / 2).clamp(floor, ceiling)
}

/// `bench.` and `comms_bench`, or `bench-<name>.` and `comms_bench_<name>` with `BENCH_NAME=<name>`
/// (letters, digits, `_`), so two benches on one machine never drop each other's database or
/// queues.
fn names() -> (String, String) {
    match std::env::var("BENCH_NAME") {
        Ok(name)
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            (format!("bench-{name}."), format!("comms_bench_{name}"))
        }
        _ => ("bench.".into(), "comms_bench".into()),
    }
}

pub struct Bench {
    pub settings: Settings,
    pub pool: PgPool,
    pub connection: Connection,
    pub topology: Topology,
    pub sandbox: Worker,
    pub sandbox_url: String,
    pub client_id: Uuid,
}

impl Bench {
    pub async fn prepare(mut settings: Settings) -> anyhow::Result<Self> {
        let url = settings.database.url.expose_secret().to_string();
        let server = url
            .rsplit_once('/')
            .map_or(url.as_str(), |(s, _)| s)
            .to_string();
        let admin = sqlx::PgPool::connect(&format!("{server}/postgres"))
            .await
            .context("PostgreSQL is not reachable (make services)")?;
        let (namespace, database) = names();
        // BENCH_REUSE=1 keeps what an earlier run of the same BENCH_NAME left (a generated data
        // set for BENCH_ONLY=size); otherwise every run starts from an empty database.
        let reuse = std::env::var("BENCH_REUSE").is_ok_and(|v| v == "1");
        if !reuse {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .execute(&admin)
                .await?;
        }
        admin.close().await;
        settings.database.url = format!("{server}/{database}").into();
        settings.database.max_connections = 4;
        settings.amqp.namespace = namespace.clone();
        comms_domain::schema::migrate(&settings.database).await?;
        let pool = comms_runtime::db::connect(&settings.database).await?;
        try_schema_change(&pool).await?;
        let connection = comms_runtime::amqp::connect(&settings.amqp, "comms-bench")
            .await
            .context("RabbitMQ is not reachable (make services)")?;
        let topology = Topology::new(&namespace);
        delete_namespace(&connection, &topology).await;
        let channel = connection.create_channel().await?;
        topology.declare(&channel).await?;

        let port = procs::free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let sandbox = Worker::start("sandbox", "comms-sandbox", &["--listen", &listen], &[])?;
        let sandbox_url = format!("http://{listen}");
        procs::wait_http(
            &format!("{sandbox_url}/sandbox/healthz"),
            Duration::from_secs(20),
        )
        .await?;

        let client_id: Uuid = sqlx::query_scalar(
            "WITH earlier AS (SELECT id FROM comms.clients WHERE name = 'Bench' AND owner = 'bench' LIMIT 1),
                  made AS (INSERT INTO comms.clients (name, owner)
                           SELECT 'Bench', 'bench' WHERE NOT EXISTS (SELECT 1 FROM earlier) RETURNING id)
             SELECT id FROM earlier UNION ALL SELECT id FROM made",
        )
        .fetch_one(&pool)
        .await?;
        for (name, channel, subject) in [("note", "sms", None), ("mail", "email", Some("Update"))] {
            sqlx::query(
                "INSERT INTO comms.templates (name, version, channel, subject, body, state, created_by, approved_by, approved_at)
                 VALUES ($1, 1, $2, $3, 'Hi {{ name }}, your update {{ n }} is ready.', 'approved', 'bench', 'bench', now())
                 ON CONFLICT (name, version) DO NOTHING",
            )
            .bind(name)
            .bind(channel)
            .bind(subject)
            .execute(&pool)
            .await?;
        }
        Ok(Self {
            settings,
            pool,
            connection,
            topology,
            sandbox,
            sandbox_url,
            client_id,
        })
    }

    /// The environment a sender process of this bench runs with. Pool and consumer settings are
    /// the project's defaults, or the bench's own `COMMS__DATABASE__*` / `COMMS__CONSUMER__*` when
    /// it is run with them (worker processes inherit the bench's environment).
    pub fn sender_env(&self, health_port: u16) -> Vec<(String, String)> {
        let s = &self.settings;
        [
            (
                "COMMS__DATABASE__URL",
                s.database.url.expose_secret().to_string(),
            ),
            ("COMMS__AMQP__URL", s.amqp.url.expose_secret().to_string()),
            ("COMMS__AMQP__NAMESPACE", s.amqp.namespace.clone()),
            ("COMMS__HTTP__LISTEN", format!("127.0.0.1:{health_port}")),
            ("COMMS__RATE__SMS__PER_SECOND", "0".into()),
            ("COMMS__RATE__EMAIL__PER_SECOND", "0".into()),
            (
                "COMMS__PROVIDERS__TWILIO__BASE_URL",
                self.sandbox_url.clone(),
            ),
            (
                "COMMS__PROVIDERS__SENDGRID__BASE_URL",
                self.sandbox_url.clone(),
            ),
            ("COMMS__PAUSE__BREAKER_FAILURES", "0".into()),
            ("COMMS__PAUSE__POLL_INTERVAL", "1s".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// One send request; SMS and email alternate, recipients repeat over 1 000 addresses.
    pub fn request(&self, key: &str, i: usize, enqueued_ms: i64) -> (String, Vec<u8>) {
        send_request(self.client_id, key, i, enqueued_ms)
    }
}

/// [`Bench::request`] for a record of `client_id`, for callers that cannot hold the bench.
pub fn send_request(client_id: Uuid, key: &str, i: usize, enqueued_ms: i64) -> (String, Vec<u8>) {
    {
        let (channel, recipient, template) = if i.is_multiple_of(2) {
            (
                "sms",
                json!({ "phone": format!("+1415555{:04}", i % 1000) }),
                "note",
            )
        } else {
            (
                "email",
                json!({ "email": format!("user{}@example.com", i % 1000) }),
                "mail",
            )
        };
        let body = json!({
            "idempotency_key": key,
            "channel": channel,
            "kind": "transactional",
            "recipient": recipient,
            "template": { "name": template, "vars": { "name": "Dana", "n": i, "t": enqueued_ms } },
            "record": { "type": "client", "id": client_id.to_string() },
            "owner": "bench", "source": "bench", "trigger": "bench.run"
        });
        (format!("send.{channel}"), body.to_string().into_bytes())
    }
}

impl Bench {
    /// Publishes every request with confirms awaited in windows of 512.
    pub async fn publish_bulk(&self, requests: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
        self.publish_to(&self.topology.send_exchange(), requests)
            .await
    }

    /// Publishes every (routing key, body) to `exchange`, confirms awaited in windows of 512.
    pub async fn publish_to(
        &self,
        exchange: &str,
        requests: &[(String, Vec<u8>)],
    ) -> anyhow::Result<()> {
        let channel = self.connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut pending = Vec::with_capacity(512);
        for (routing_key, body) in requests {
            pending.push(
                channel
                    .basic_publish(
                        exchange.into(),
                        routing_key.as_str().into(),
                        BasicPublishOptions::default(),
                        body,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?,
            );
            if pending.len() == 512 {
                for confirm in pending.drain(..) {
                    confirm.await?;
                }
            }
        }
        for confirm in pending {
            confirm.await?;
        }
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }

    /// Messages ready in the three send queues (not counting those a sender holds unacked).
    pub async fn queued_sends(&self) -> anyhow::Result<u32> {
        let channel = self.connection.create_channel().await?;
        let mut total = 0;
        for name in ["sms", "email", "portal"] {
            let queue = self.topology.send_queue(name);
            let declared = channel
                .queue_declare(
                    queue.name.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            total += declared.message_count();
        }
        let _ = channel.close(200, "done".into()).await;
        Ok(total)
    }

    /// The database's clock: a phase reads it before its messages exist and passes it to
    /// [`Self::wait_sent`] as `since`.
    pub async fn db_now(&self) -> anyhow::Result<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Waits until every message whose key starts with `prefix`, recorded at or after `since`,
    /// is sent (or `limit` passes). Polled through the (state, created) index over the phase's
    /// own rows: the `sent` rows earlier phases left behind (the size bench keeps hundreds of
    /// thousands) are never read, so the poll costs the same at every table size.
    pub async fn wait_sent(
        &self,
        prefix: &str,
        since: DateTime<Utc>,
        count: usize,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        let deadline = started + limit;
        loop {
            let sent: i64 = sqlx::query_scalar(SENT_SINCE)
                .bind(format!("{prefix}%"))
                .bind(since)
                .fetch_one(&self.pool)
                .await?;
            if sent as usize >= count {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "only {sent} of {count} {prefix}* messages were sent within {limit:?}"
                );
            }
            tokio::time::sleep(next_poll(started.elapsed(), sent as usize, count)).await;
        }
    }

    pub async fn cleanup(self) {
        delete_namespace(&self.connection, &self.topology).await;
        self.sandbox.stop().await;
        self.pool.close().await;
    }
}

async fn delete_namespace(connection: &Connection, topology: &Topology) {
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let mut queues: Vec<String> = topology.work_queues().into_iter().map(|q| q.name).collect();
    queues.push(topology.dead_queue());
    queues.extend(RETRY_TIERS.iter().map(|t| topology.retry_queue(*t)));
    for queue in queues {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

/// Sets each of `tuning` in a worker's `env`, unless the bench itself runs with that variable set
/// (then the worker inherits the bench's value).
pub fn tune_consumer(env: &mut Vec<(String, String)>, tuning: &[(&str, &str)]) {
    for (name, value) in tuning {
        env.retain(|(key, _)| key != name);
        if std::env::var_os(name).is_none() {
            env.push(((*name).into(), (*value).into()));
        }
    }
}

/// `BENCH_SCHEMA_TRY=<file>`: SQL run on the bench's database after its migrations, before any
/// scenario, so a schema change (an index dropped, a column's default changed) is measured before
/// it is written as a migration. Run the same command without it for the baseline.
async fn try_schema_change(pool: &PgPool) -> anyhow::Result<()> {
    let Ok(path) = std::env::var("BENCH_SCHEMA_TRY") else {
        return Ok(());
    };
    let sql = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    sqlx::raw_sql(&sql)
        .execute(pool)
        .await
        .with_context(|| format!("applying {path}"))?;
    eprintln!("applied the schema change in {path}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_counts_again_at_half_the_time_the_rest_should_take_within_its_bounds() {
        let second = Duration::from_secs(1);
        // 10 s for the first 1 000 of 3 000: 20 s to go, counted again in 10 s, at most 5 s.
        assert_eq!(next_poll(10 * second, 1_000, 3_000), 5 * second);
        // 10 s for 2 000 of 2 100: 0.5 s to go, counted again in 250 ms.
        assert_eq!(
            next_poll(10 * second, 2_000, 2_100),
            Duration::from_millis(250)
        );
        // Nothing sent yet, or nearly done: every 200 ms.
        assert_eq!(next_poll(10 * second, 0, 2_000), Duration::from_millis(200));
        assert_eq!(
            next_poll(10 * second, 1_999, 2_000),
            Duration::from_millis(200)
        );
    }
}
