//! `POST /v1/enrolments` and `POST /v1/outcomes` for apps that do not speak AMQP (`enqueue` keys).
//!
//! The bodies are the `comms.enrolment.v1` and `comms.outcome.v1` contracts, checked and applied
//! by the same comms-shared code the `comms-sequences` worker runs for `comms.sequence`, so both
//! entry points refuse the same inputs with the same reasons. Both are idempotent: an enrolment
//! of a contact already enrolled, or an outcome already recorded, answers 200 with
//! `"created": false` and changes nothing; a new one answers 201.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use comms_domain::outcomes::{self, OutcomeError};
use comms_domain::sequences::{SequenceError, enrol};

use crate::auth::{Authorized, Enqueue};
use crate::reply;
use crate::state::GatewayState;

fn unavailable(error: &dyn std::fmt::Display) -> Response {
    tracing::warn!(%error, "an enrolment or outcome could not be stored");
    reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "nothing was recorded; retry",
    )
}

/// The reason code and text of a refusal written as `code: text`.
fn split(refusal: &str) -> (&str, &str) {
    match refusal.split_once(": ") {
        Some((code, text)) if !code.contains(' ') => (code, text),
        _ => ("invalid_request", refusal),
    }
}

/// `POST /v1/enrolments`
pub async fn enrolments(
    State(state): State<GatewayState>,
    _auth: Authorized<Enqueue>,
    body: Bytes,
) -> Response {
    let request = match enrol::parse(&body) {
        Ok(request) => request,
        Err(refusal) => {
            let (code, text) = split(&refusal);
            return reply::error(StatusCode::UNPROCESSABLE_ENTITY, code, text);
        }
    };
    match enrol::enrol(&state.inner().pool, &request, chrono::Utc::now()).await {
        Ok(enrolled) => {
            let status = if enrolled.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(enrolled)).into_response()
        }
        Err(SequenceError::Db(error)) => unavailable(&error),
        Err(refused) => {
            let text = refused.to_string();
            let (code, text) = split(&text);
            reply::error(StatusCode::UNPROCESSABLE_ENTITY, code, text)
        }
    }
}

/// `POST /v1/outcomes`
pub async fn outcomes(
    State(state): State<GatewayState>,
    _auth: Authorized<Enqueue>,
    body: Bytes,
) -> Response {
    let request = match outcomes::parse(&body) {
        Ok(request) => request,
        Err(refused) => return refusal(&refused),
    };
    match outcomes::record(&state.inner().pool, &request, chrono::Utc::now()).await {
        Ok(recorded) => {
            let status = if recorded.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(recorded)).into_response()
        }
        Err(OutcomeError::Db(error)) => unavailable(&error),
        Err(refused) => refusal(&refused),
    }
}

fn refusal(error: &OutcomeError) -> Response {
    let status = if error.code() == "outcome_id_reused" {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let text = error.to_string();
    let (_, text) = split(&text);
    reply::error(status, error.code(), text)
}
