//! `/healthz`, `/readyz` and `/metrics`, served by every process.
//!
//! Liveness never depends on the broker or the database (a restart cures neither, and a liveness
//! probe that fails with them restarts the whole fleet at once). Readiness does: the database
//! answers, and every registered check (a consumer attached, the pause switch confirmed) is green.
//!
//! A worker declares its checks ([`Health::expect`]) when it is created, before the health server
//! of its process starts, and a process with no check declared at all is not ready either: the
//! health server comes up first (so liveness answers at once), and nothing may read as ready in
//! the time between that and the moment the last consumer is attached.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sqlx::PgPool;

use crate::shutdown::Shutdown;

/// The readiness state of one process, shared by everything that can make it not-ready.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    checks: Mutex<BTreeMap<String, Check>>,
}

/// One named readiness condition.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub database: bool,
    pub checks: BTreeMap<String, Check>,
}

impl Health {
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                checks: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Records the state of one condition; every condition must be ok for the process to be ready.
    pub fn set(&self, name: &str, ok: bool, detail: impl Into<String>) {
        let mut checks = self
            .inner
            .checks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        checks.insert(
            name.to_string(),
            Check {
                ok,
                detail: detail.into(),
            },
        );
    }

    /// Declares a condition this process will satisfy later: until something [`Health::set`]s it
    /// ok, the process is not ready. A condition already known keeps its state.
    pub fn expect(&self, name: &str, detail: impl Into<String>) {
        let mut checks = self
            .inner
            .checks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        checks.entry(name.to_string()).or_insert_with(|| Check {
            ok: false,
            detail: detail.into(),
        });
    }

    /// Computes readiness now.
    pub async fn readiness(&self) -> Readiness {
        let database = crate::db::ping(&self.inner.pool, Duration::from_secs(1)).await;
        let checks = self
            .inner
            .checks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        // No check declared means nothing is running yet, which is not ready.
        let ready = database && !checks.is_empty() && checks.values().all(|c| c.ok);
        Readiness {
            ready,
            database,
            checks,
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    let readiness = health.readiness().await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

async fn metrics() -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}

/// The health and metrics routes, for processes that merge them into a larger router.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

/// Binds `addr` and serves the health routes until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: Shutdown,
) -> Result<(), std::io::Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(http.listen = %listener.local_addr()?, "health and metrics endpoints up");
    axum::serve(listener, router(health))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
