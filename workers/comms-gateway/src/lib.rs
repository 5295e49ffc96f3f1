//! `comms-gateway`: the fleet's HTTP edge.
//!
//! One server for:
//! - **provider webhooks** (Twilio status and inbound, SendGrid events and Inbound Parse): verify
//!   the provider's signature, publish the raw payload to `comms.provider` with a broker confirm,
//!   and only then answer 2xx (503 otherwise, so the provider retries);
//! - **the enqueue API** (`POST /v1/messages`, `/v1/enrolments`, `/v1/outcomes`) for apps that
//!   do not speak AMQP, behind API keys with roles ([`auth`]);
//! - **the operator console** at `/console` (`docs/console.md`), signed in with the same keys;
//! - **report views** (`/digests/view/{token}`): signed links in report digests (`docs/digests.md`).
//!
//! `GET /openapi.json` describes every route (`docs/openapi.json`, [`openapi`]).
//! `/healthz`, `/readyz` and `/metrics` are merged into the same router; the gateway is ready only
//! while its broker link is up (`broker::BrokerLink::keep_ready`). See `docs/gateway.md`.

mod api;
mod approvals;
pub mod auth;
mod broker;
mod console;
mod dead_api;
mod digest_views;
mod digests_api;
mod incidents_api;
mod metrics;
mod nul_guard;
mod openapi;
mod outgoing_webhooks_api;
mod pause_api;
mod privacy_api;
mod reply;
mod review_links;
mod sequences_api;
mod state;
pub mod status_api;
mod unsubscribe;
pub mod verify;
mod webhooks;
pub mod write_batch;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use comms_runtime::runtime::Runtime;
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;
use tokio::net::TcpListener;

pub use api::SUBMITTED_BY_HEADER;
pub use state::{ConfigError, GatewayState};
pub use webhooks::{CONTENT_TYPE_HEADER, KIND_HEADER, PROVIDER_HEADER, RECEIVED_AT_HEADER};

/// The gateway's readiness check in `/readyz`: ok while it accepts requests.
pub const READY_CHECK: &str = "gateway";

/// Every gateway route, plus the health and metrics routes of `runtime`.
pub fn router(state: GatewayState, runtime: &Runtime) -> Router {
    let max_body = runtime.settings.gateway.max_body_bytes;
    Router::new()
        .route("/webhooks/twilio/status", post(webhooks::twilio::status))
        .route("/webhooks/twilio/inbound", post(webhooks::twilio::inbound))
        .route(
            "/webhooks/sendgrid/events",
            post(webhooks::sendgrid::events),
        )
        .route(
            "/webhooks/sendgrid/inbound/{secret}",
            post(webhooks::sendgrid::inbound),
        )
        .route("/v1/messages", post(api::enqueue).get(status_api::list))
        .route("/v1/messages/{reference}", get(status_api::one))
        .route("/v1/messages/{reference}/reveal", get(privacy_api::reveal))
        .route("/v1/contacts/forget", post(privacy_api::forget))
        .route("/v1/audit/access", get(privacy_api::audit))
        .route("/v1/enrolments", post(sequences_api::enrolments))
        .route("/v1/outcomes", post(sequences_api::outcomes))
        .route(
            "/v1/webhooks",
            get(outgoing_webhooks_api::list).post(outgoing_webhooks_api::add),
        )
        .route("/v1/pause", get(pause_api::status).post(pause_api::pause))
        .route("/v1/resume", post(pause_api::resume))
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe::page).post(unsubscribe::one_click),
        )
        .route(
            "/v1/incidents",
            get(incidents_api::list).post(incidents_api::declare),
        )
        .route("/v1/incidents/{id}", get(incidents_api::show))
        .route("/v1/incidents/{id}/update", post(incidents_api::update))
        .route("/v1/incidents/{id}/verify", post(incidents_api::verify))
        .route("/v1/incidents/{id}/resolve", post(incidents_api::resolve))
        .route(
            "/v1/incidents/{id}/resume-automation",
            post(incidents_api::resume_automation),
        )
        .route("/v1/digests", get(digests_api::list))
        .route("/v1/digests/build", post(digests_api::build))
        .route("/v1/digests/{id}", get(digests_api::show))
        .route("/v1/digests/{id}/approve", post(digests_api::approve))
        .route(
            "/v1/digests/clients/{client}/release",
            post(digests_api::release),
        )
        .route("/digests/view/{token}", get(digest_views::view))
        .route("/reviews/go/{token}", get(review_links::follow))
        .route("/v1/dead", get(dead_api::list))
        .route("/v1/dead/replay", post(dead_api::replay))
        .route("/v1/dead/purge", post(dead_api::purge))
        .route("/v1/dead/{id}", get(dead_api::show))
        .route("/v1/approvals", get(approvals::list))
        .route("/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/v1/approvals/{id}/reject", post(approvals::reject))
        .route("/v1/approvals/{id}/review", post(approvals::review))
        .route("/openapi.json", get(openapi::document))
        .merge(console::router())
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
        .merge(comms_runtime::health::router(runtime.health.clone()))
        .fallback(openapi::no_route)
        .layer(axum::middleware::from_fn_with_state(
            max_body,
            nul_guard::refuse_nul,
        ))
        .layer(axum::middleware::map_response(openapi::json_errors))
}

/// Serves the gateway on `listener` until `shutdown`, then lets in-flight requests finish.
/// Tests bind `127.0.0.1:0` and pass the listener in.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let state = GatewayState::new(&runtime).context("gateway settings")?;
    let app = router(state.clone(), &runtime);
    // Not ready until the broker link is up; from then on readiness follows it.
    let health = runtime.health.clone();
    health.set(
        broker::READY_CHECK,
        false,
        "not connected to the broker yet",
    );
    let (watcher_state, watcher_stop) = (state.clone(), shutdown.clone());
    let watcher = tokio::spawn(async move {
        let broker = &watcher_state.inner().broker;
        broker.keep_ready(&health, &watcher_stop).await;
    });
    let address = listener.local_addr().context("gateway listener address")?;
    tracing::info!(gateway.listen = %address, "gateway up");
    runtime
        .health
        .set(READY_CHECK, true, format!("listening on {address}"));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    // Whatever ended the server, the watcher must not reconnect after the link is closed.
    watcher.abort();
    let _ = watcher.await;
    runtime.health.set(READY_CHECK, false, "stopped");
    state.close().await;
    served.context("gateway server")?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Binds `gateway.listen` and serves until `shutdown`. Calling it declares the gateway's
/// readiness check at once, so `/readyz` on another port cannot read ready before the gateway
/// itself accepts requests.
pub fn run(
    runtime: Runtime,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
    runtime.health.expect(READY_CHECK, "not listening yet");
    runtime
        .health
        .expect(broker::READY_CHECK, "not connected to the broker yet");
    bind_and_serve(runtime, shutdown)
}

async fn bind_and_serve(runtime: Runtime, shutdown: Shutdown) -> anyhow::Result<()> {
    let address = runtime.settings.gateway.listen;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("the gateway cannot listen on {address}"))?;
    serve(listener, runtime, shutdown).await
}

/// What the gateway checks at start beyond the shared settings (its public URL, the SendGrid
/// key), without connecting anywhere: `comms-gateway --check-config` runs it.
pub fn check_settings(settings: &Settings) -> anyhow::Result<()> {
    let pool = comms_runtime::db::connect_lazy(&settings.database)?;
    let runtime = Runtime::new(std::sync::Arc::new(settings.clone()), pool);
    GatewayState::new(&runtime).context("gateway settings")?;
    Ok(())
}

/// The `comms-gateway` binary: a lazily connecting pool (the process starts, and reports
/// not-ready, while PostgreSQL is down), [`run`], and — like every worker — the health and
/// metrics routes on `http.listen` too, where probes and scrapers look for them.
pub async fn run_standalone(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let settings = std::sync::Arc::new(settings);
    let pool = comms_runtime::db::connect_lazy(&settings.database)?;
    let runtime = Runtime::new(settings.clone(), pool);
    let health_state = runtime.health.clone();
    let gateway = run(runtime, shutdown.clone());
    let health = (settings.http.listen != settings.gateway.listen).then(|| {
        tokio::spawn(comms_runtime::health::serve(
            settings.http.listen,
            health_state,
            shutdown.clone(),
        ))
    });
    let served = gateway.await;
    // Whatever ended the gateway ends the process: stop the health server with it.
    shutdown.cancel();
    if let Some(health) = health {
        health
            .await
            .context("health server task")?
            .context("health server")?;
    }
    served
}
