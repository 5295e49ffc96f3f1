//! The privacy admin API, the HTTP twin of `commsctl contacts forget`, `commsctl message --reveal`
//! and `commsctl audit access` (docs/privacy.md), for `owner` keys only:
//! - `POST /v1/contacts/forget` erases a person ([`comms_domain::privacy::erase`]);
//! - `GET /v1/messages/{reference}/reveal?why=…` returns a message's full recipient and content,
//!   recorded in the access log first;
//! - `GET /v1/audit/access?who=&contact=&since=` lists the recorded reads.
//!
//! The person acting is the one the body (or `by`) names, with the key's name; without one, the
//! key's name.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use comms_domain::dead::DeadError;
use comms_domain::privacy::access::{self, Access, AccessFilter, Via};
use comms_domain::privacy::erase::{self, EraseError, ForgetRequest, Subject};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth::{Authorized, Owner};
use crate::reply;
use crate::state::GatewayState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetBody {
    phone: Option<String>,
    email: Option<String>,
    contact_id: Option<Uuid>,
    reason: Option<String>,
    /// The person erasing, recorded with the key's name.
    by: Option<String>,
}

fn invalid(message: &str) -> Response {
    reply::error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
}

fn unavailable() -> Response {
    reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the database could not be read or changed; retry",
    )
}

fn broker_unavailable() -> Response {
    reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "broker_unavailable",
        "the dead-letter queue could not be read, so nothing was erased; retry",
    )
}

/// The person the caller names, with the key; the key's name alone otherwise.
fn actor(person: Option<&str>, key_name: &str) -> String {
    match person.map(str::trim).filter(|p| !p.is_empty()) {
        Some(person) => format!("{person} (key {key_name})"),
        None => key_name.to_string(),
    }
}

/// `POST /v1/contacts/forget`
pub async fn forget(
    State(state): State<GatewayState>,
    auth: Authorized<Owner>,
    body: Result<Json<ForgetBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return invalid(&rejection.body_text()),
    };
    let subject = match (body.phone, body.email, body.contact_id) {
        (Some(phone), None, None) => Subject::Phone(phone),
        (None, Some(email), None) => Subject::Email(email),
        (None, None, Some(id)) => Subject::Contact(id),
        _ => return invalid("name exactly one of phone, email, contact_id"),
    };
    let request = ForgetRequest {
        subject,
        reason: body.reason.unwrap_or_default(),
        by: actor(body.by.as_deref(), &auth.caller.name),
    };
    let inner = state.inner();
    let key = inner.settings.privacy.hash_key.expose_secret().as_bytes();
    // Dead letters waiting in comms.dead are erased too: no broker, no erasure (503, retry).
    let publisher = match inner.broker.current().await {
        Ok(publisher) => publisher,
        Err(error) => {
            tracing::warn!(%error, "erasure refused: comms.dead cannot be read");
            return broker_unavailable();
        }
    };
    match erase::forget(&inner.pool, &publisher, &inner.topology, key, &request).await {
        Ok(erasure) => {
            tracing::warn!(erasure.id = erasure.id, api.key = %auth.caller.name, "personal data erased through the admin API");
            Json(json!({ "erasure": erasure })).into_response()
        }
        Err(EraseError::NoReason) => invalid("reason: is required"),
        Err(EraseError::NoActor) => invalid("by: is required"),
        Err(error @ EraseError::InvalidAddress { .. }) => invalid(&error.to_string()),
        Err(EraseError::UnknownContact(id)) => reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no contact {id}"),
        ),
        Err(EraseError::DeadQueue(DeadError::Db(error)) | EraseError::Db(error)) => {
            tracing::warn!(%error, "erasure failed");
            unavailable()
        }
        Err(EraseError::DeadQueue(error)) => {
            tracing::warn!(%error, "erasure refused: comms.dead could not be collected");
            broker_unavailable()
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RevealQuery {
    why: Option<String>,
    by: Option<String>,
}

/// `GET /v1/messages/{reference}/reveal`
pub async fn reveal(
    State(state): State<GatewayState>,
    auth: Authorized<Owner>,
    Path(reference): Path<String>,
    Query(query): Query<RevealQuery>,
) -> Response {
    let pool = &state.inner().pool;
    let id: Option<Uuid> = match sqlx::query_scalar(
        "SELECT id FROM comms.messages WHERE id = $1 OR idempotency_key = $2",
    )
    .bind(reference.parse::<Uuid>().ok())
    .bind(&reference)
    .fetch_optional(pool)
    .await
    {
        Ok(id) => id,
        Err(_) => return unavailable(),
    };
    let Some(id) = id else {
        return reply::error(StatusCode::NOT_FOUND, "not_found", "no such message");
    };
    let who = actor(query.by.as_deref(), &auth.caller.name);
    let access = Access {
        who: &who,
        via: Via::AdminApi,
        what: "message recipient and content",
        message_id: None,
        contact_id: None,
        why: query.why.as_deref(),
    };
    match access::reveal(pool, id, &access).await {
        Ok(Some(revealed)) => Json(json!({ "revealed": revealed })).into_response(),
        Ok(None) => reply::error(StatusCode::NOT_FOUND, "not_found", "no such message"),
        Err(_) => unavailable(),
    }
}

#[derive(Debug, Deserialize)]
pub struct AccessQuery {
    who: Option<String>,
    contact: Option<Uuid>,
    since: Option<DateTime<Utc>>,
    limit: Option<i64>,
}

/// `GET /v1/audit/access`
pub async fn audit(
    State(state): State<GatewayState>,
    _auth: Authorized<Owner>,
    Query(query): Query<AccessQuery>,
) -> Response {
    let filter = AccessFilter {
        who: query.who,
        contact: query.contact,
        since: query.since,
        limit: query.limit.unwrap_or(200),
    };
    match access::list(&state.inner().pool, &filter).await {
        Ok(entries) => Json(json!({ "access": entries })).into_response(),
        Err(_) => unavailable(),
    }
}
