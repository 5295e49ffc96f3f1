//! The HTTP side of fault injection: arming, listing and clearing faults over `/sandbox/faults`,
//! and answering a faulted send (after its optional hang).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::faults::{Fault, FaultSpec};
use crate::state::AppState;

/// Waits out an accepting fault's `timeout_ms` after the send was recorded; `false` when the
/// server started shutting down meanwhile (then it answers 503 at once, like any hang).
pub(crate) async fn hang_after_accepting(state: &AppState, fault: Option<&Fault>) -> bool {
    match fault.and_then(|f| f.spec.timeout_ms) {
        Some(ms) => state.sleep_unless_stopping(Duration::from_millis(ms)).await,
        None => true,
    }
}

/// Applies an injected fault: waits out `timeout_ms` (unless shutting down), then answers.
pub(crate) async fn respond(
    state: &AppState,
    fault: &Fault,
    respond: fn(&Fault) -> Response,
) -> Response {
    if let Some(ms) = fault.spec.timeout_ms {
        let waited = state.sleep_unless_stopping(Duration::from_millis(ms)).await;
        if !waited {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    respond(fault)
}

fn validate(spec: &FaultSpec) -> Result<(), String> {
    if let Some(status) = spec.status
        && !(400..=599).contains(&status)
    {
        return Err(format!(
            "status {status} is not an error status (400..=599)"
        ));
    }
    if spec.times == Some(0) {
        return Err("times must be at least 1 (or null for until cleared)".into());
    }
    if spec.accept && (spec.timeout_ms.is_none() || spec.status.is_some()) {
        return Err("accept needs timeout_ms and no status: the send succeeds, late".into());
    }
    if spec.status.is_none() && spec.timeout_ms.is_none() && spec.callback_status.is_none() {
        return Err("a fault needs at least one of status, timeout_ms or callback_status".into());
    }
    if let (Some(cs), Some(channel)) = (spec.callback_status, spec.channel)
        && !cs.applies_to(channel)
    {
        return Err(format!(
            "callback_status {cs:?} does not apply to channel {channel:?}"
        ));
    }
    Ok(())
}

/// `POST /sandbox/faults`
pub(crate) async fn create(
    State(state): State<AppState>,
    spec: Result<Json<FaultSpec>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let spec = match spec {
        Ok(Json(spec)) => spec,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    if let Err(message) = validate(&spec) {
        return bad_request(message);
    }
    let fault = state.faults().add(spec);
    tracing::info!(id = %fault.id, "fault armed");
    (StatusCode::CREATED, Json(fault)).into_response()
}

/// `GET /sandbox/faults`
pub(crate) async fn list(State(state): State<AppState>) -> Json<Vec<Fault>> {
    Json(state.faults().faults.clone())
}

/// `DELETE /sandbox/faults`
pub(crate) async fn clear(State(state): State<AppState>) -> StatusCode {
    state.faults().faults.clear();
    StatusCode::NO_CONTENT
}

/// `DELETE /sandbox/faults/{id}`
pub(crate) async fn delete_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> StatusCode {
    let mut book = state.faults();
    let before = book.faults.len();
    book.faults.retain(|f| f.id != id);
    if book.faults.len() < before {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(status: Option<u16>, times: Option<u32>) -> FaultSpec {
        FaultSpec {
            status,
            times,
            ..FaultSpec::default()
        }
    }

    #[test]
    fn validation_rejects_useless_faults() {
        assert!(validate(&FaultSpec::default()).is_err());
        assert!(validate(&spec(Some(200), None)).is_err());
        assert!(validate(&spec(Some(429), Some(0))).is_err());
        assert!(validate(&spec(Some(503), Some(2))).is_ok());
        let late = |timeout_ms, status| FaultSpec {
            accept: true,
            timeout_ms,
            status,
            ..FaultSpec::default()
        };
        assert!(validate(&late(Some(3000), None)).is_ok());
        assert!(validate(&late(None, None)).is_err());
        assert!(validate(&late(Some(3000), Some(500))).is_err());
    }
}
