//! Twilio's webhooks: status callbacks (`POST /webhooks/twilio/status`) and inbound messages
//! (`POST /webhooks/twilio/inbound`), both signed with `X-Twilio-Signature`.
//!
//! The signed URL is rebuilt from `gateway.public_url` plus the request's path and query, because
//! behind a load balancer the URL the gateway sees is not the one Twilio called. A missing
//! signature is 400 and a wrong one 403, as in Twilio's own middleware.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use super::{Verified, accept, content_type, count, header_text, refused_body};
use crate::reply;
use crate::state::GatewayState;
use crate::verify::twilio::{SIGNATURE_HEADER, verify};

const FORM: &str = "application/x-www-form-urlencoded";
/// What Twilio expects from an inbound-message webhook when we do not reply inline.
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// `POST /webhooks/twilio/status`
pub async fn status(
    State(state): State<GatewayState>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(&state, "status", &uri, &headers, body).await
}

/// `POST /webhooks/twilio/inbound`
pub async fn inbound(
    State(state): State<GatewayState>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(&state, "inbound", &uri, &headers, body).await
}

async fn handle(
    state: &GatewayState,
    kind: &'static str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused_body(rejection, "twilio", kind),
    };
    let Some(signature) = header_text(headers, SIGNATURE_HEADER) else {
        count("twilio", kind, "missing_signature");
        return reply::error(
            StatusCode::BAD_REQUEST,
            "missing_signature",
            "X-Twilio-Signature is required",
        );
    };
    let content_type = content_type(headers, FORM);
    let path = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let url = format!("{}{path}", state.inner().public_url);
    // JSON webhooks are signed over the URL alone (with bodySHA256); form fields count otherwise.
    let params: Vec<(String, String)> = if content_type.starts_with("application/json") {
        Vec::new()
    } else {
        form_urlencoded::parse(&body).into_owned().collect()
    };
    let token = state.inner().twilio_token.expose_secret().as_bytes();
    if !verify(token, &url, &params, &body, signature) {
        count("twilio", kind, "invalid_signature");
        tracing::info!(
            webhook.provider = "twilio",
            webhook.kind = kind,
            "webhook refused: signature does not match"
        );
        return reply::error(
            StatusCode::FORBIDDEN,
            "invalid_signature",
            "X-Twilio-Signature does not match this request",
        );
    }
    let ok = if kind == "inbound" {
        ([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response()
    } else {
        StatusCode::OK.into_response()
    };
    let payload = Verified {
        provider: "twilio",
        kind,
        content_type,
        body: &body,
    };
    accept(state, payload, ok).await
}
