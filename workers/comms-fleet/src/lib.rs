//! Every worker of the fleet in one process, sharing one pool, one health endpoint and one
//! shutdown signal. Small installs, demos and `make run` use this; production runs each worker
//! as its own deployment so each scales on its own queue.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use comms_runtime::cli::WorkerArgs;
use comms_runtime::clock::SystemClock;
use comms_runtime::runtime::Runtime;
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;
use secrecy::ExposeSecret;

/// What `comms-fleet --check-config` checks beyond the shared settings: the gateway's.
pub use comms_gateway::check_settings;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "comms-fleet",
    version,
    about = "Run every comms-fleet worker in one process",
    after_help = "Settings come from the environment like every worker's (docs/operations.md)."
)]
pub struct Options {
    /// Also run the sandbox provider, with its delivery callbacks wired to this process's gateway
    /// (provider base URLs left at their sandbox default are pointed at it).
    #[arg(long)]
    pub with_sandbox: bool,
    /// Where the sandbox listens when `--with-sandbox` is given.
    #[arg(long, default_value = "127.0.0.1:8025")]
    pub sandbox_listen: SocketAddr,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Runs every worker (and the sandbox, if asked) until `shutdown`. One worker failing (a port
/// taken, a bad key) stops the whole process, with its reason.
pub async fn run(settings: Settings, options: Options, shutdown: Shutdown) -> anyhow::Result<()> {
    preflight_services(&settings).await?;
    let applied = comms_domain::schema::migrate(&settings.database).await?;
    tracing::info!(migrations.applied = applied, "database ready");
    let mut settings = settings;
    let sandbox = if options.with_sandbox {
        Some(start_sandbox(&mut settings, options.sandbox_listen, &shutdown).await?)
    } else {
        None
    };
    let settings = Arc::new(settings);

    let pool = comms_runtime::db::connect_lazy(&settings.database)?;
    let runtime = Runtime::new(settings.clone(), pool);
    // Every worker is created (declaring its readiness checks) before `/readyz` first answers.
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    let gateway = comms_gateway::run(rt, stop);
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    let status = comms_status::run(rt, stop);
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    let replies = comms_replies::run(rt, stop);
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    let events = comms_events::run(rt, stop);
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    let incidents = comms_incidents::run(rt, stop);
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    let digest = comms_digest::run(rt, stop);
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    let sequences = comms_sequences::run(rt, stop);
    let sender = comms_sender::run(runtime.clone(), Arc::new(SystemClock), shutdown.clone());
    let health = tokio::spawn(comms_runtime::health::serve(
        settings.http.listen,
        runtime.health.clone(),
        shutdown.clone(),
    ));
    tracing::info!(http.listen = %settings.http.listen, gateway.listen = %settings.gateway.listen, "fleet starting: sender (sms, email, portal), gateway, status, replies, events, incidents, digest, sequences");
    let mut workers = tokio::task::JoinSet::new();
    workers.spawn(async move { ("gateway", gateway.await) });
    workers.spawn(async move { ("status", status.await) });
    workers.spawn(async move { ("replies", replies.await) });
    workers.spawn(async move { ("events", events.await) });
    workers.spawn(async move { ("incidents", incidents.await) });
    workers.spawn(async move { ("digest", digest.await) });
    workers.spawn(async move { ("sequences", sequences.await) });
    workers.spawn(async move { ("sender", sender.await) });
    let mut failure = None;
    while let Some(done) = workers.join_next().await {
        let error = match done {
            Ok((_, Ok(()))) => continue,
            Ok((name, Err(error))) => error.context(format!("{name} failed")),
            Err(join) => anyhow::anyhow!("a worker task crashed: {join}"),
        };
        shutdown.cancel();
        failure.get_or_insert(error);
    }

    health
        .await
        .context("health task")?
        .context("health server")?;
    if let Some(sandbox) = sandbox {
        sandbox.await.context("sandbox task")?.context("sandbox")?;
    }
    if let Some(error) = failure {
        return Err(error);
    }
    tracing::info!("fleet stopped");
    Ok(())
}

/// Starts the sandbox on `listen` and wires it to this process: its delivery callbacks and
/// inbound messages go to this process's gateway, signed with the keys the gateway checks, and
/// provider base URLs still at their default point at the sandbox's actual address.
async fn start_sandbox(
    settings: &mut Settings,
    listen: SocketAddr,
    shutdown: &Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("the sandbox cannot listen on {listen}"))?;
    let address = listener.local_addr().context("sandbox address")?;
    let mut config = comms_sandbox::SandboxConfig::generated()?
        .with_gateway(settings.gateway.public_url.clone());
    config.twilio_account_sid = settings.providers.twilio.account_sid.clone();
    config.twilio_auth_token = settings
        .providers
        .twilio
        .auth_token
        .expose_secret()
        .to_string();
    if settings.providers.sendgrid.webhook_public_key.is_none() {
        settings.providers.sendgrid.webhook_public_key =
            Some(config.sendgrid_signer.public_key_base64().to_string());
    }
    let defaults = comms_runtime::settings::ProviderSettings::default();
    // Listening on every interface (a container) is reached on loopback from inside.
    let mut reachable = address;
    if reachable.ip().is_unspecified() {
        reachable.set_ip(match reachable {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let sandbox_url = format!("http://{reachable}");
    if settings.providers.twilio.base_url == defaults.twilio.base_url {
        settings.providers.twilio.base_url = sandbox_url.clone();
    }
    if settings.providers.sendgrid.base_url == defaults.sendgrid.base_url {
        settings.providers.sendgrid.base_url = sandbox_url;
    }
    tracing::info!(sandbox.listen = %address, gateway.public_url = %settings.gateway.public_url, "sandbox provider up; callbacks go to the gateway");
    let stop = shutdown.clone();
    Ok(tokio::spawn(comms_sandbox::serve(
        listener,
        config,
        async move {
            stop.cancelled().await;
        },
    )))
}

/// Fails fast, with the commands that fix it, when the broker or database is not there.
async fn preflight_services(settings: &Settings) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if let Err(e) = comms_runtime::amqp::connect(&settings.amqp, "comms-fleet-preflight").await {
        missing.push(format!(
            "RabbitMQ is not reachable ({e}).\n  start it with: rabbitmq-server -detached && rabbitmqctl await_startup"
        ));
    }
    let mut admin = settings.database.clone();
    admin.acquire_timeout = std::time::Duration::from_secs(3);
    if let Err(e) = comms_runtime::db::migrate_check_reachable(&admin).await {
        missing.push(format!(
            "PostgreSQL is not reachable ({e}).\n  start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("the fleet cannot start:\n{}", missing.join("\n"))
    }
}
