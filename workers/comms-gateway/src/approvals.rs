//! The owner's admin API over the approval workflow: `GET /v1/approvals` (what waits) and
//! `POST /v1/approvals/{id}/approve`, `/reject` and `/review`, for `owner` keys only.
//!
//! The key authenticates the calling app (a dashboard, say); the person deciding is named in the
//! body as `decided_by` and must be the message's owner or a delegate the owner named. The rules
//! are `comms_domain::approvals`, exactly the ones `commsctl approve` applies, and an approved
//! message is handed back to `comms.send` the same way (decision committed first, then a confirmed
//! publish; a lost publish is repaired by the senders' housekeeping).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use comms_domain::approvals::{self, ApprovalError, Decided, Decision};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Authorized, Owner};
use crate::reply;
use crate::state::GatewayState;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only what this person may decide on (as owner or delegate).
    owner: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// The person deciding: the message's owner or a delegate they named.
    decided_by: String,
    /// Why (required to reject).
    reason: Option<String>,
}

/// `GET /v1/approvals[?owner=NAME]`
pub async fn list(
    State(state): State<GatewayState>,
    _auth: Authorized<Owner>,
    Query(query): Query<ListQuery>,
) -> Response {
    match approvals::waiting(&state.inner().pool, query.owner.as_deref()).await {
        Ok(waiting) => Json(json!({ "waiting": waiting })).into_response(),
        Err(error) => {
            tracing::warn!(%error, "approvals could not be listed");
            unavailable()
        }
    }
}

/// `POST /v1/approvals/{id}/approve` with `{"decided_by": …}`
pub async fn approve(
    State(state): State<GatewayState>,
    auth: Authorized<Owner>,
    Path(id): Path<String>,
    body: Result<Json<DecisionBody>, JsonRejection>,
) -> Response {
    decide(&state, &auth, &id, body, |_| Decision::Approve).await
}

/// `POST /v1/approvals/{id}/reject` with `{"decided_by": …, "reason": …}`
pub async fn reject(
    State(state): State<GatewayState>,
    auth: Authorized<Owner>,
    Path(id): Path<String>,
    body: Result<Json<DecisionBody>, JsonRejection>,
) -> Response {
    decide(&state, &auth, &id, body, |reason| Decision::Reject {
        reason: reason.unwrap_or_default(),
    })
    .await
}

/// `POST /v1/approvals/{id}/review` with `{"decided_by": …}`: the AI draft was reviewed and is safe.
pub async fn review(
    State(state): State<GatewayState>,
    auth: Authorized<Owner>,
    Path(id): Path<String>,
    body: Result<Json<DecisionBody>, JsonRejection>,
) -> Response {
    decide(&state, &auth, &id, body, |_| Decision::ReviewSafe).await
}

async fn decide(
    state: &GatewayState,
    auth: &Authorized<Owner>,
    id: &str,
    body: Result<Json<DecisionBody>, JsonRejection>,
    decision: impl FnOnce(Option<String>) -> Decision,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return reply::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                &format!("expected {{\"decided_by\": …, \"reason\": …}}: {rejection}"),
            );
        }
    };
    let pool = &state.inner().pool;
    let decided = match approvals::decide(pool, id, decision(body.reason), &body.decided_by).await {
        Ok(decided) => decided,
        Err(error) => return refused(&error),
    };
    tracing::info!(api.key_name = %auth.caller.name, message.id = %decided.message_id, approval.decision = decided.decision, "approval decision via the API");
    let handed = decided.goes_on() && hand_back(state, &decided).await;
    let mut value = serde_json::to_value(&decided).unwrap_or_default();
    value["handed_to_sender"] = json!(handed);
    (StatusCode::OK, Json(value)).into_response()
}

/// Publishes the approved request again; `false` leaves it to the senders' housekeeping.
pub(crate) async fn hand_back(state: &GatewayState, decided: &Decided) -> bool {
    let inner = state.inner();
    let request = match approvals::stored_request(&inner.pool, decided.message_id).await {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, message.id = %decided.message_id, "approved request could not be loaded; housekeeping publishes it");
            return false;
        }
    };
    let exchange = inner.topology.send_exchange();
    if let Err(error) = inner.broker.publish(request.outgoing(&exchange)).await {
        tracing::warn!(%error, message.id = %decided.message_id, "approved request not confirmed by the broker; housekeeping publishes it");
        return false;
    }
    if let Err(error) = approvals::mark_republished(&inner.pool, decided.message_id).await {
        tracing::warn!(%error, message.id = %decided.message_id, "publish not recorded; a duplicate may follow (the sender dedupes)");
    }
    true
}

fn unavailable() -> Response {
    reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the database cannot be reached; try again",
    )
}

fn refused(error: &ApprovalError) -> Response {
    let (status, reason) = match error {
        ApprovalError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        ApprovalError::NotWaiting { .. } => (StatusCode::CONFLICT, "not_awaiting_approval"),
        ApprovalError::WrongGate { .. } => (StatusCode::CONFLICT, "wrong_gate"),
        ApprovalError::NotAllowed { .. } | ApprovalError::NotOwner { .. } => {
            (StatusCode::FORBIDDEN, "not_owner_or_delegate")
        }
        ApprovalError::Missing(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ApprovalError::Db(error) if comms_runtime::db_error::is_transient(error) => {
            tracing::warn!(%error, "approval decision could not be recorded");
            return unavailable();
        }
        // The database refused this decision's content: trying again cannot help.
        ApprovalError::Db(error) => {
            let reason = comms_runtime::db_error::refused_reason(error);
            tracing::warn!(%reason, "approval decision refused by the database");
            return reply::error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", &reason);
        }
    };
    reply::error(status, reason, &error.to_string())
}
