//! The gateway's error answers: one small JSON shape, `{"reason": <code>, "message": <text>}`,
//! so callers and providers' delivery logs show a machine-readable reason and a sentence.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer with a stable `reason` code and a human `message`.
pub fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "reason": reason, "message": message })),
    )
        .into_response()
}

/// 503 for a payload the broker did not confirm: the provider (or caller) must retry.
pub fn broker_unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "broker_unavailable",
        "the message broker did not confirm the payload; nothing was accepted, retry later",
    )
}
