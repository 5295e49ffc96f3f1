//! The dead-letter page: how many dead letters wait in `comms.dead`, and the latest refused
//! inputs (`internal.rejected_input`) with their queue and reason (masked like every dead-letter
//! listing, `comms_domain::dead::mask`). Payloads are not shown: they can hold personal data.
//!
//! Replay and purge are `commsctl dead` and the admin API (`/v1/dead`), not controls here yet;
//! the page says so rather than offering a control that does nothing.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use minijinja::context;
use serde::Serialize;

use super::session::Operator;
use super::view;
use crate::state::GatewayState;

/// The most refused inputs the page lists.
const LIMIT: i64 = 50;

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Rejected {
    id: i64,
    queue: String,
    routing_key: String,
    reason: String,
    received_at: DateTime<Utc>,
}

/// `GET /console/dead`
pub async fn page(State(state): State<GatewayState>, operator: Operator) -> Response {
    let inner = state.inner();
    let dead_queue = inner.topology.dead_queue();
    let depth = inner
        .broker
        .queue_depths(std::slice::from_ref(&dead_queue))
        .await
        .first()
        .and_then(|q| q.messages);
    let rejected: Result<Vec<Rejected>, sqlx::Error> = sqlx::query_as(
        "SELECT id, queue, routing_key, reason, received_at FROM internal.rejected_input
         ORDER BY received_at DESC, id DESC LIMIT $1",
    )
    .bind(LIMIT)
    .fetch_all(&inner.pool)
    .await;
    let rejected = rejected.map(|mut rows| {
        for row in &mut rows {
            row.reason = comms_domain::dead::mask::mask(&row.reason);
        }
        rows
    });
    match rejected {
        Ok(rejected) => view::page(
            StatusCode::OK,
            "Dead letters",
            Some(&operator),
            "dead.html",
            context! { dead_queue, depth, rejected, limit => LIMIT },
        ),
        Err(error) => {
            tracing::warn!(%error, "dead letters could not be listed");
            view::unavailable(Some(&operator))
        }
    }
}
