//! SendGrid's webhooks: the signed Event Webhook (`POST /webhooks/sendgrid/events`) and Inbound
//! Parse (`POST /webhooks/sendgrid/inbound/{secret}`).
//!
//! Events are accepted only with a valid ECDSA signature under the configured public key and a
//! timestamp within `gateway.signature_tolerance`; without a configured key the endpoint answers
//! 503 (so SendGrid keeps retrying while an operator fixes the configuration) and never accepts
//! unsigned events. Inbound Parse carries no signature, so its URL carries a secret path segment,
//! compared in constant time; a wrong secret is 404, as if the route did not exist.
//!
//! The workers read what the signature (or the secret) covers: the event batch is signed byte for
//! byte and read as JSON whatever else arrives; Inbound Parse is authenticated as a whole request
//! by its secret. A content type other than the endpoint's (`comms_domain::webhook_body`) is 415.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use axum::http::header;
use comms_domain::webhook_body::{self, SENDGRID_EVENTS, SENDGRID_INBOUND};

use super::{Verified, accept, count, header_text, refused_body, refused_content};
use crate::reply;
use crate::state::{GatewayState, secret_hash};
use crate::verify::sendgrid::{SIGNATURE_HEADER, TIMESTAMP_HEADER, timestamp_is_fresh, verify};

/// `POST /webhooks/sendgrid/events`
pub async fn events(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    const KIND: &str = "status";
    let Some(key) = state.inner().sendgrid_key.as_ref() else {
        count("sendgrid", KIND, "no_key");
        tracing::warn!("SendGrid event refused: no webhook public key is configured");
        return reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "sendgrid_key_missing",
            "no SendGrid webhook public key is configured \
             (COMMS__PROVIDERS__SENDGRID__WEBHOOK_PUBLIC_KEY); unsigned events are never accepted",
        );
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused_body(rejection, "sendgrid", KIND),
    };
    let (Some(signature), Some(timestamp)) = (
        header_text(&headers, SIGNATURE_HEADER),
        header_text(&headers, TIMESTAMP_HEADER),
    ) else {
        count("sendgrid", KIND, "missing_signature");
        return reply::error(
            StatusCode::BAD_REQUEST,
            "missing_signature",
            "X-Twilio-Email-Event-Webhook-Signature and -Timestamp are required",
        );
    };
    let content_type = header_text(&headers, header::CONTENT_TYPE.as_str());
    let format = match webhook_body::format(content_type, SENDGRID_EVENTS) {
        Ok(format) => format,
        Err(error) => return refused_content(&error, "sendgrid", KIND),
    };
    if !verify(key, timestamp, &body, signature) {
        count("sendgrid", KIND, "invalid_signature");
        tracing::info!(
            webhook.provider = "sendgrid",
            "event webhook refused: signature does not verify"
        );
        return reply::error(
            StatusCode::FORBIDDEN,
            "invalid_signature",
            "the event webhook signature does not verify with the configured public key",
        );
    }
    let tolerance = state.inner().settings.gateway.signature_tolerance;
    match timestamp_is_fresh(timestamp, chrono::Utc::now().timestamp(), tolerance) {
        Some(true) => {}
        Some(false) | None => {
            count("sendgrid", KIND, "stale_timestamp");
            tracing::info!(
                webhook.provider = "sendgrid",
                "event webhook refused: timestamp outside the tolerance"
            );
            return reply::error(
                StatusCode::FORBIDDEN,
                "stale_timestamp",
                "the signed timestamp is outside gateway.signature_tolerance",
            );
        }
    }
    let payload = Verified {
        provider: "sendgrid",
        kind: KIND,
        content_type: content_type.unwrap_or(format.media_type()),
        body: &body,
        traceparent: None,
    };
    accept(&state, payload, StatusCode::OK.into_response()).await
}

/// `POST /webhooks/sendgrid/inbound/{secret}`
pub async fn inbound(
    State(state): State<GatewayState>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    const KIND: &str = "inbound";
    let expected = &state.inner().inbound_secret_hash;
    if !bool::from(secret_hash(secret.as_bytes()).ct_eq(expected)) {
        count("sendgrid", KIND, "not_found");
        return reply::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint");
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused_body(rejection, "sendgrid", KIND),
    };
    let content_type = header_text(&headers, header::CONTENT_TYPE.as_str());
    let format = match webhook_body::format(content_type, SENDGRID_INBOUND) {
        Ok(format) => format,
        Err(error) => return refused_content(&error, "sendgrid", KIND),
    };
    let payload = Verified {
        provider: "sendgrid",
        kind: KIND,
        content_type: content_type.unwrap_or(format.media_type()),
        body: &body,
        traceparent: None,
    };
    accept(&state, payload, StatusCode::OK.into_response()).await
}
