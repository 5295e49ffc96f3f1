//! The digest admin API, the HTTP twin of `commsctl digest` (docs/digests.md), for `owner` keys
//! only: list and show digests, ask for a build, approve a digest, release a client's held
//! digests.
//!
//! The key authenticates the calling app; the person deciding is named in the body as `by` and
//! must be the digest's owner or a delegate the owner named. The rules are
//! `comms_domain::digests::decide` and the reads `comms_domain::digests::view`, exactly what
//! `commsctl` and the console use; after a decision the `digest.report` job that publishes (or
//! builds again) is published with a confirm, as `commsctl digest approve|release` do.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use comms_domain::digests::decide::{self, DecideError};
use comms_domain::digests::view;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth::{Authorized, Owner};
use crate::console::enqueue_digest_jobs;
use crate::reply;
use crate::state::GatewayState;

/// What the API names as the jobs' source.
const SOURCE: &str = "admin-api";

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// The person deciding: the digest's owner or a delegate the owner named.
    by: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildBody {
    /// The report period whose digest is built (or published, once approved).
    period: Uuid,
}

fn invalid(message: &str) -> Response {
    reply::error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
}

fn unavailable(error: &sqlx::Error) -> Response {
    tracing::warn!(%error, "digests could not be read or changed");
    reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the database cannot be reached; nothing was changed, retry",
    )
}

fn refused(error: DecideError) -> Response {
    let (status, reason) = match &error {
        DecideError::NotFound(_) | DecideError::NotHeld(_) => (StatusCode::NOT_FOUND, "not_found"),
        DecideError::NotWaiting { .. } => (StatusCode::CONFLICT, "not_awaiting_approval"),
        DecideError::NotAllowed { .. } => (StatusCode::FORBIDDEN, "not_owner_or_delegate"),
        DecideError::NoActor => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        DecideError::Db(db) => return unavailable(db),
    };
    reply::error(status, reason, &error.to_string())
}

/// `GET /v1/digests[?state=STATE]`: digests, newest build first.
pub async fn list(
    State(state): State<GatewayState>,
    _auth: Authorized<Owner>,
    Query(query): Query<ListQuery>,
) -> Response {
    let only = query.state.filter(|s| !s.trim().is_empty());
    if let Some(unknown) = only.as_deref().filter(|s| !view::STATES.contains(s)) {
        return reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            &format!(
                "state: `{unknown}` is not a digest state ({})",
                view::STATES.join(", ")
            ),
        );
    }
    match view::list(&state.inner().pool, only.as_deref()).await {
        Ok(digests) => Json(json!({ "digests": digests })).into_response(),
        Err(error) => unavailable(&error),
    }
}

/// `GET /v1/digests/{digest id or period id}`: what `commsctl digest show --json` prints.
pub async fn show(
    State(state): State<GatewayState>,
    _auth: Authorized<Owner>,
    Path(reference): Path<Uuid>,
) -> Response {
    match view::find(&state.inner().pool, reference).await {
        Ok(Some(found)) => Json(found).into_response(),
        Ok(None) => reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no digest or report period {reference}"),
        ),
        Err(error) => unavailable(&error),
    }
}

/// `POST /v1/digests/build` with `{"period": …}`: 202 once the job is on the broker.
pub async fn build(
    State(state): State<GatewayState>,
    auth: Authorized<Owner>,
    body: Result<Json<BuildBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return invalid(&rejection.body_text()),
    };
    let owner: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
        "SELECT r.owner FROM comms.report_periods p JOIN comms.reports r ON r.id = p.report_id
         WHERE p.id = $1",
    )
    .bind(body.period)
    .fetch_optional(&state.inner().pool)
    .await;
    let owner = match owner {
        Ok(Some(owner)) => owner,
        Ok(None) => {
            return reply::error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no report period {}", body.period),
            );
        }
        Err(error) => return unavailable(&error),
    };
    if !enqueue_digest_jobs(&state, &[body.period], &owner, SOURCE).await {
        return reply::broker_unavailable();
    }
    tracing::info!(api.key_name = %auth.caller.name, report.period = %body.period, "digest build requested via the API");
    (
        StatusCode::ACCEPTED,
        Json(json!({ "enqueued": [body.period] })),
    )
        .into_response()
}

/// `POST /v1/digests/{id}/approve` with `{"by": …}`: the approval, and whether the job that
/// publishes the digest is on the broker (`enqueued`).
pub async fn approve(
    State(state): State<GatewayState>,
    auth: Authorized<Owner>,
    Path(id): Path<Uuid>,
    body: Result<Json<DecisionBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return invalid(&rejection.body_text()),
    };
    let approval = match decide::approve(&state.inner().pool, id, &body.by).await {
        Ok(approval) => approval,
        Err(error) => return refused(error),
    };
    tracing::info!(api.key_name = %auth.caller.name, digest.id = %id, "digest approved via the API");
    let enqueued =
        enqueue_digest_jobs(&state, &[approval.period_id], &approval.approved_by, SOURCE).await;
    let mut value = serde_json::to_value(&approval).unwrap_or_default();
    value["enqueued"] = json!(enqueued);
    if !enqueued {
        value["next_action"] = json!(format!(
            "the approval is recorded but the broker did not take the job that publishes it: \
             POST /v1/digests/build {{\"period\": \"{}\"}}",
            approval.period_id
        ));
    }
    Json(value).into_response()
}

/// `POST /v1/digests/clients/{client}/release` with `{"by": …}`: the hold is lifted and the
/// client's closed periods are built again (`enqueued`: whether the broker took those jobs).
pub async fn release(
    State(state): State<GatewayState>,
    auth: Authorized<Owner>,
    Path(client): Path<Uuid>,
    body: Result<Json<DecisionBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return invalid(&rejection.body_text()),
    };
    let periods = match decide::release(&state.inner().pool, client, &body.by).await {
        Ok(periods) => periods,
        Err(error) => return refused(error),
    };
    tracing::info!(api.key_name = %auth.caller.name, client.id = %client, periods = periods.len(), "held digests released via the API");
    let enqueued = enqueue_digest_jobs(&state, &periods, body.by.trim(), SOURCE).await;
    Json(json!({ "client_id": client, "periods": periods, "enqueued": enqueued })).into_response()
}
