//! The gateway's OpenAPI 3.1 description, `docs/openapi.json`, served at `GET /openapi.json` so
//! upstream developers can generate clients from the running gateway, and the answers the router
//! gives outside its handlers, in the documented error shape.
//!
//! axum answers some refusals itself before a handler runs — an unknown path (an empty 404), a
//! method the path does not take (405), a path or query that does not parse (plain-text 400) —
//! and the document promises `{"reason", "message"}` for every error. [`json_errors`] rewrites
//! those plain-text 4xx answers into that shape and [`no_route`] answers unknown paths, so every
//! error a caller sees is the one the document describes. `openapi_agreement.rs` keeps the
//! document, the router and the request schemas in agreement.

use axum::body::{Body, to_bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::reply;

/// The document, as committed.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

/// A plain-text refusal is never longer than this (axum's texts are one line).
const MAX_TEXT: usize = 4096;

/// `GET /openapi.json`
pub async fn document() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT,
    )
        .into_response()
}

/// Answers a path no route serves.
pub async fn no_route() -> Response {
    reply::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The reason code of a refusal axum wrote itself, by its status.
fn reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_content_type",
        _ => "invalid_request",
    }
}

/// Rewrites a 4xx answer that is plain text (or empty, like axum's 405) into the JSON error
/// shape, keeping its status and headers (`Allow` on a 405).
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !status.is_client_error() {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !content_type.is_none_or(|t| t.starts_with("text/plain")) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match to_bytes(body, MAX_TEXT).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase(),
    };
    let rewritten = reply::error(status, reason(status), &text);
    let (new_parts, new_body) = rewritten.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &new_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, Body::new(new_body))
}

#[cfg(test)]
#[path = "openapi_agreement.rs"]
mod agreement;
