//! Every worker of the fleet in one process, sharing one pool, one health endpoint and one
//! shutdown signal. Small installs, demos and `make run` use this; production runs each worker
//! as its own deployment so each scales on its own queue.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use comms_shared::clock::SystemClock;
use comms_shared::runtime::Runtime;
use comms_shared::settings::Settings;
use secrecy::ExposeSecret;

#[derive(Debug, Parser)]
#[command(
    name = "comms-fleet",
    version,
    about = "Run every comms-fleet worker in one process"
)]
pub struct Options {
    /// Also run the sandbox provider (the default Twilio/SendGrid base URLs point at it).
    #[arg(long)]
    pub with_sandbox: bool,
    /// Where the sandbox listens when `--with-sandbox` is given.
    #[arg(long, default_value = "127.0.0.1:8025")]
    pub sandbox_listen: SocketAddr,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let settings = Settings::load().context("loading settings")?;
    let telemetry = comms_shared::telemetry::init(&settings.log, "comms-fleet");
    let result = run_fleet(settings, options).await;
    telemetry.finish().await;
    result
}

async fn run_fleet(settings: Settings, options: Options) -> anyhow::Result<()> {
    let mut settings = Arc::new(settings);
    let shutdown = comms_shared::shutdown::on_signals();

    preflight_services(&settings).await?;
    let applied = comms_shared::db::migrate(&settings.database).await?;
    tracing::info!(migrations.applied = applied, "database ready");

    let mut sandbox = None;
    if options.with_sandbox {
        let listener = tokio::net::TcpListener::bind(options.sandbox_listen)
            .await
            .with_context(|| format!("the sandbox cannot listen on {}", options.sandbox_listen))?;
        // The sandbox calls back the gateway of this process, signed with the keys it checks.
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
            let mut patched = (*settings).clone();
            patched.providers.sendgrid.webhook_public_key =
                Some(config.sendgrid_signer.public_key_base64().to_string());
            settings = Arc::new(patched);
        }
        let stop = shutdown.clone();
        tracing::info!(sandbox.listen = %options.sandbox_listen, "sandbox provider up");
        sandbox = Some(tokio::spawn(comms_sandbox::serve(
            listener,
            config,
            async move {
                stop.cancelled().await;
            },
        )));
    }

    let pool = comms_shared::db::connect_lazy(&settings.database)?;
    let runtime = Runtime::new(settings.clone(), pool);
    let health = tokio::spawn(comms_shared::health::serve(
        settings.http.listen,
        runtime.health.clone(),
        shutdown.clone(),
    ));
    tracing::info!(http.listen = %settings.http.listen, gateway.listen = %settings.gateway.listen, "fleet starting: sender (sms, email, portal), gateway, status, replies, events, digest");
    let mut workers = tokio::task::JoinSet::new();
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    workers.spawn(async move { ("gateway", comms_gateway::run(rt, stop).await) });
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    workers.spawn(async move { ("status", comms_status::run(rt, stop).await) });
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    workers.spawn(async move { ("replies", comms_replies::run(rt, stop).await) });
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    workers.spawn(async move { ("events", comms_events::run(rt, stop).await) });
    let (rt, stop) = (runtime.clone(), shutdown.clone());
    workers.spawn(async move { ("digest", comms_digest::run(rt, stop).await) });
    let stop = shutdown.clone();
    workers.spawn(async move {
        let sent = comms_sender::run(runtime, Arc::new(SystemClock), stop).await;
        ("sender", sent)
    });
    // One worker failing (a port taken, a bad key) stops the whole process, with its reason.
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

/// Fails fast, with the commands that fix it, when the broker or database is not there.
async fn preflight_services(settings: &Settings) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if let Err(e) = comms_shared::amqp::connect(&settings.amqp, "comms-fleet-preflight").await {
        missing.push(format!(
            "RabbitMQ is not reachable ({e}).\n  start it with: rabbitmq-server -detached && rabbitmqctl await_startup"
        ));
    }
    let mut admin = settings.database.clone();
    admin.acquire_timeout = std::time::Duration::from_secs(3);
    if let Err(e) = comms_shared::db::migrate_check_reachable(&admin).await {
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
