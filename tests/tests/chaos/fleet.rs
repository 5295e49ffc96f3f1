//! The whole fleet on loopback, as it runs in production but on services of the run's own: a
//! private RabbitMQ node (reached by the workers through a proxy the run can cut), a private
//! PostgreSQL cluster, the sandbox provider posting signed callbacks, and the gateway, two
//! senders, the status and the replies worker as separate processes. Nothing here touches the
//! machine's shared broker or database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use comms_domain::api_keys::{self, Role};
use comms_runtime::settings::Settings;
use comms_runtime::topology::Topology;
use comms_sandbox::SandboxClient;
use comms_tests::private_broker::PrivateBroker;
use comms_tests::private_postgres::PrivatePostgres;
use comms_tests::proxy::Proxy;
use sqlx::PgPool;
use uuid::Uuid;

use crate::procs::{self, Proc};

/// The application name of the run's own database connections, which a connection cut spares.
pub const CHECKER: &str = "comms-chaos";
pub const NAMESPACE: &str = "chaos.";
const DATABASE: &str = "comms_chaos";

/// The API keys the run uses (secrets: the privacy check looks for them in the logs).
pub struct Keys {
    pub enqueue: String,
    pub owner: String,
    pub oncall: String,
}

pub struct Fleet {
    pub broker: PrivateBroker,
    pub proxy: Proxy,
    pub postgres: PrivatePostgres,
    /// The run's own connections (application name [`CHECKER`]).
    pub pool: PgPool,
    pub topology: Topology,
    pub client_id: Uuid,
    pub keys: Keys,
    pub twilio_token: String,
    pub gateway_url: String,
    pub sandbox: SandboxClient,
    pub http: reqwest::Client,
    pub procs: Vec<Proc>,
}

fn free_port() -> u16 {
    comms_tests::free_address().port()
}

fn broker_addr(url: &str) -> SocketAddr {
    let port = url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("the private broker's port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

impl Fleet {
    /// Starts everything and waits until every worker is ready; the workers export their traces
    /// to `otlp` when given.
    pub async fn start(dir: PathBuf, otlp: Option<&str>) -> Self {
        std::fs::create_dir_all(&dir).expect("run folder");
        let broker = tokio::task::block_in_place(PrivateBroker::start);
        let proxy = Proxy::start(broker_addr(&broker.url)).await;
        let postgres = tokio::task::block_in_place(PrivatePostgres::start);
        let db_url = postgres.url(DATABASE);
        let settings = Settings::load_from(
            &[("COMMS__DATABASE__URL".to_string(), db_url.clone())]
                .into_iter()
                .collect(),
        )
        .expect("settings");
        comms_domain::schema::migrate(&settings.database)
            .await
            .expect("the private database migrates");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(6)
            .connect(&format!("{db_url}?application_name={CHECKER}"))
            .await
            .expect("the private database answers");
        let client_id = prepare_data(&pool).await;
        let key = |name: &'static str, role| {
            let pool = pool.clone();
            async move {
                api_keys::create(&pool, name, role)
                    .await
                    .expect("api key")
                    .key
            }
        };
        let keys = Keys {
            enqueue: key("chaos-upstream", Role::Enqueue).await,
            owner: key("chaos-owner", Role::Owner).await,
            oncall: key("chaos-oncall", Role::Oncall).await,
        };
        let twilio_token = format!("chaos-twilio-{}", Uuid::new_v4().simple());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("http client");

        let (gateway_port, sandbox_port) = (free_port(), free_port());
        let gateway_url = format!("http://127.0.0.1:{gateway_port}");
        let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).expect("log folder");
        let mut sandbox = Proc::new(
            "sandbox",
            "comms-sandbox",
            &[
                "--listen".into(),
                format!("127.0.0.1:{sandbox_port}"),
                "--gateway-url".into(),
                gateway_url.clone(),
                "--twilio-auth-token".into(),
                twilio_token.clone(),
                "--callback-retries".into(),
                "12".into(),
            ],
            pairs(&[("RUST_LOG", "info")]),
            &logs,
            format!("{sandbox_url}/sandbox/healthz"),
        );
        sandbox.spawn();
        assert!(
            procs::ready(&http, &sandbox.ready_url, Duration::from_secs(60)).await,
            "the sandbox is not ready"
        );
        let signing: serde_json::Value = http
            .get(format!("{sandbox_url}/sandbox/signing-key"))
            .send()
            .await
            .expect("signing key")
            .json()
            .await
            .expect("signing key json");
        let public_key = signing["sendgrid_public_key"]
            .as_str()
            .expect("a public key")
            .to_string();

        let amqp = format!("amqp://guest:guest@{}/%2f", proxy.addr);
        let common = pairs(&[
            ("COMMS__DATABASE__URL", db_url.as_str()),
            ("COMMS__AMQP__URL", amqp.as_str()),
            ("COMMS__AMQP__NAMESPACE", NAMESPACE),
            ("COMMS__LOG__FORMAT", "json"),
            ("COMMS__LOG__LEVEL", "info"),
            ("COMMS__PROVIDERS__TWILIO__BASE_URL", sandbox_url.as_str()),
            ("COMMS__PROVIDERS__SENDGRID__BASE_URL", sandbox_url.as_str()),
            (
                "COMMS__PROVIDERS__TWILIO__AUTH_TOKEN",
                twilio_token.as_str(),
            ),
            (
                "COMMS__PROVIDERS__SENDGRID__WEBHOOK_PUBLIC_KEY",
                public_key.as_str(),
            ),
            ("COMMS__GATEWAY__PUBLIC_URL", gateway_url.as_str()),
            ("COMMS__RATE__SMS__PER_SECOND", "0"),
            ("COMMS__RATE__EMAIL__PER_SECOND", "0"),
            ("COMMS__RATE__PORTAL__PER_SECOND", "0"),
            ("COMMS__SENDER__PROVIDER_TIMEOUT", "2s"),
            ("COMMS__STATUS__RECONCILE_AFTER", "20s"),
            ("COMMS__PAUSE__POLL_INTERVAL", "1s"),
            ("COMMS__PAUSE__BREAKER_AUTO_RESUME", "5s"),
            ("COMMS__APPROVALS__CHECK_INTERVAL", "5s"),
        ]);
        let mut common = common;
        if let Some(endpoint) = otlp {
            common.push(("COMMS__LOG__OTLP_ENDPOINT".into(), endpoint.to_string()));
        }
        let mut procs = vec![sandbox];
        for (name, binary) in [
            ("gateway", "comms-gateway"),
            ("sender-1", "comms-sender"),
            ("sender-2", "comms-sender"),
            ("status", "comms-status"),
            ("replies", "comms-replies"),
        ] {
            let health = format!("127.0.0.1:{}", free_port());
            let mut env = common.clone();
            env.push(("COMMS__HTTP__LISTEN".into(), health.clone()));
            if name == "gateway" {
                env.push((
                    "COMMS__GATEWAY__LISTEN".into(),
                    format!("127.0.0.1:{gateway_port}"),
                ));
            }
            let mut proc = Proc::new(
                name,
                binary,
                &[],
                env,
                &logs,
                format!("http://{health}/readyz"),
            );
            proc.spawn();
            procs.push(proc);
        }
        let fleet = Self {
            broker,
            proxy,
            postgres,
            pool,
            topology: Topology::new(NAMESPACE),
            client_id,
            keys,
            twilio_token,
            gateway_url,
            sandbox: SandboxClient::new(sandbox_url),
            http,
            procs,
        };
        for proc in &fleet.procs {
            assert!(
                procs::ready(&fleet.http, &proc.ready_url, Duration::from_secs(90)).await,
                "{} is not ready (its log: {})",
                proc.name,
                proc.log_path().display()
            );
        }
        fleet
    }

    pub fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// `kill -9` of a worker, `down` of nothing, then the same binary started again; returns
    /// once it is ready again (bounded).
    pub async fn kill_and_restart(&mut self, name: &str, down: Duration) {
        self.proc(name).kill9();
        tokio::time::sleep(down).await;
        self.proc(name).spawn();
        let url = self.proc(name).ready_url.clone();
        assert!(
            procs::ready(&self.http, &url, Duration::from_secs(90)).await,
            "{name} is not ready after its restart"
        );
    }

    /// Ends every session the fleet has on the database (not the run's own).
    pub async fn cut_database_connections(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND application_name <> $2 AND pid <> pg_backend_pid()) t",
        )
        .bind(DATABASE)
        .bind(CHECKER)
        .fetch_one(&self.pool)
        .await
        .unwrap_or(0)
    }

    /// Workers that exited on their own (crashed), with how.
    pub fn crashed(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|p| p.exited().map(|how| format!("{} ({how})", p.name)))
            .collect()
    }

    /// The log files of the fleet's workers (not the sandbox's: it plays the provider).
    pub fn worker_logs(&self) -> Vec<PathBuf> {
        self.procs
            .iter()
            .filter(|p| p.name != "sandbox")
            .map(|p| p.log_path().to_path_buf())
            .collect()
    }

    /// Stops every process gracefully.
    pub fn stop(&mut self) {
        for proc in self.procs.iter_mut().rev() {
            proc.stop(Duration::from_secs(10));
        }
    }
}

/// The client every message is attached to, and the three templates.
async fn prepare_data(pool: &PgPool) -> Uuid {
    let client_id: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.clients (name, owner) VALUES ('Chaos Dental', 'ana') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("client");
    for (name, channel, subject, body) in [
        (
            "chaos-sms",
            "sms",
            None,
            "Hi {{ name }}, update {{ ref }} is ready.",
        ),
        (
            "chaos-mail",
            "email",
            Some("Update {{ ref }}"),
            "Hi {{ name }}, update {{ ref }} is ready.",
        ),
        (
            "chaos-portal",
            "portal",
            Some("Monthly report"),
            "Your monthly report {{ ref }} is ready.",
        ),
    ] {
        sqlx::query(
            "INSERT INTO comms.templates (name, version, channel, subject, body, state, created_by, approved_by, approved_at)
             VALUES ($1, 1, $2, $3, $4, 'approved', 'chaos', 'ana', now())",
        )
        .bind(name)
        .bind(channel)
        .bind(subject)
        .bind(body)
        .execute(pool)
        .await
        .expect("template");
    }
    client_id
}
