//! The incident admin API, the HTTP twin of `commsctl incident` (docs/incidents.md):
//! `oncall` keys (and `owner` keys) declare, update, verify, resolve, list and show incidents;
//! only `owner` keys record the decision that resumes automation. The rules are
//! `comms_domain::incidents::ops`, exactly the ones `commsctl` applies, and an event is checked by
//! the worker's own decoder before it is published (confirmed) to `comms.incident`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use comms_domain::incidents::event::{EventType, IncidentEvent};
use comms_domain::incidents::ops::{self, Change, Declaration, IncidentError};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth::{Authorized, Oncall, Owner};
use crate::reply;
use crate::state::GatewayState;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeBody {
    /// The person deciding: the incident's owner or a delegate the owner named.
    by: String,
}

fn invalid(message: &str) -> Response {
    reply::error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
}

fn failure(error: IncidentError) -> Response {
    let (status, reason) = match &error {
        IncidentError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        IncidentError::NotAllowed { .. } => (StatusCode::FORBIDDEN, "not_owner_or_delegate"),
        IncidentError::FactsNotVerified(_) => (StatusCode::CONFLICT, "facts_not_verified"),
        IncidentError::Resolved(_) => (StatusCode::CONFLICT, "incident_resolved"),
        IncidentError::AlreadyDeclared(_) => (StatusCode::CONFLICT, "incident_exists"),
        IncidentError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_event"),
        IncidentError::UnknownAffected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_affected"),
        IncidentError::Pause(_) | IncidentError::Db(_) => {
            tracing::warn!(%error, "incident request failed");
            return reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the incident could not be read or changed; retry",
            );
        }
    };
    reply::error(status, reason, &error.to_string())
}

/// Who sent an event: the API and the key's name (the event's `source`).
fn source(key_name: &str) -> String {
    format!("admin-api (key {key_name})")
}

/// Checks and publishes one event; 202 with its id, sequence and routing key.
async fn publish(
    state: &GatewayState,
    kind: EventType,
    event: Result<IncidentEvent, IncidentError>,
) -> Response {
    let event = match event {
        Ok(event) => event,
        Err(error) => return failure(error),
    };
    let prepared = match ops::prepare(kind, event) {
        Ok(prepared) => prepared,
        Err(error) => return failure(error.into()),
    };
    let inner = state.inner();
    if let Err(error) = ops::check_affected(&inner.pool, &prepared.event.affected).await {
        return failure(error);
    }
    let exchange = inner.topology.incident_exchange();
    if let Err(error) = inner.broker.publish(prepared.outgoing(&exchange)).await {
        tracing::warn!(%error, "an incident event could not be published");
        return reply::broker_unavailable();
    }
    let body = json!({
        "incident_id": prepared.event.incident_id,
        "sequence": prepared.event.sequence,
        "routing_key": prepared.routing_key(),
    });
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// `POST /v1/incidents`
pub async fn declare(
    State(state): State<GatewayState>,
    auth: Authorized<Oncall>,
    body: Result<Json<Declaration>, JsonRejection>,
) -> Response {
    let Json(declared) = match body {
        Ok(body) => body,
        Err(rejection) => return invalid(&rejection.body_text()),
    };
    if let Some(id) = declared.incident_id
        && let Err(error) = ops::check_new(&state.inner().pool, id).await
    {
        return failure(error);
    }
    let event = ops::declaration(declared, &source(&auth.caller.name));
    publish(&state, EventType::Declared, Ok(event)).await
}

/// `POST /v1/incidents/{id}/update`, `/verify` and `/resolve`: the next event, built from the
/// incident's latest one with the body's changes (an empty body changes nothing else).
async fn follow_up(
    state: GatewayState,
    key_name: &str,
    id: Uuid,
    kind: EventType,
    body: Bytes,
) -> Response {
    let change = if body.iter().all(u8::is_ascii_whitespace) {
        Change::default()
    } else {
        match serde_json::from_slice::<Change>(&body) {
            Ok(change) => change,
            Err(error) => return invalid(&format!("the body is not a valid change: {error}")),
        }
    };
    let pool = &state.inner().pool;
    let event = ops::follow_up(pool, id, kind, change, &source(key_name)).await;
    publish(&state, kind, event).await
}

pub async fn update(
    State(state): State<GatewayState>,
    auth: Authorized<Oncall>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Response {
    follow_up(state, &auth.caller.name, id, EventType::Updated, body).await
}

pub async fn verify(
    State(state): State<GatewayState>,
    auth: Authorized<Oncall>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Response {
    follow_up(state, &auth.caller.name, id, EventType::FactsVerified, body).await
}

pub async fn resolve(
    State(state): State<GatewayState>,
    auth: Authorized<Oncall>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Response {
    follow_up(state, &auth.caller.name, id, EventType::Resolved, body).await
}

/// `POST /v1/incidents/{id}/resume-automation` (owner keys): `{"by": "<owner or delegate>"}`.
pub async fn resume_automation(
    State(state): State<GatewayState>,
    auth: Authorized<Owner>,
    Path(id): Path<Uuid>,
    body: Result<Json<ResumeBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return invalid(&rejection.body_text()),
    };
    match ops::resume_automation(&state.inner().pool, id, &body.by).await {
        Ok(resumed) => {
            tracing::warn!(incident = %id, api.key = %auth.caller.name, "automation resumed through the admin API");
            Json(json!({ "resumed": resumed })).into_response()
        }
        Err(error) => failure(error),
    }
}

/// `GET /v1/incidents[?limit=N]`
pub async fn list(
    State(state): State<GatewayState>,
    _auth: Authorized<Oncall>,
    Query(query): Query<ListQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    match ops::list(&state.inner().pool, limit).await {
        Ok(incidents) => Json(json!({ "incidents": incidents })).into_response(),
        Err(error) => failure(error.into()),
    }
}

/// `GET /v1/incidents/{id}`: the timeline `commsctl incident show` prints.
pub async fn show(
    State(state): State<GatewayState>,
    _auth: Authorized<Oncall>,
    Path(id): Path<Uuid>,
) -> Response {
    match ops::show(&state.inner().pool, id).await {
        Ok(shown) => Json(shown).into_response(),
        Err(error) => failure(error),
    }
}
