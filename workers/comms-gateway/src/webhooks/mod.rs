//! Provider webhooks: verify, publish the raw payload to `comms.provider` with a confirm, and
//! only then answer 2xx.
//!
//! The gateway does not interpret payloads (the status and replies workers do). It adds headers
//! saying which provider sent what, with which content type, and when the gateway first saw it
//! (the status worker's clock for "how long has this callback waited for its message?"). A
//! payload the broker does not confirm gets 503, so the provider retries: nothing accepted is
//! lost, and nothing is accepted that could be.

pub mod sendgrid;
pub mod twilio;

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use comms_domain::webhook_body::BodyError;
use comms_runtime::amqp::Outgoing;
use lapin::types::{AMQPValue, FieldTable};
use tracing::Instrument;

use crate::broker::BrokerError;
use crate::metrics;
use crate::reply;
use crate::state::GatewayState;

/// Header naming the provider (`twilio`, `sendgrid`).
pub const PROVIDER_HEADER: &str = "x-comms-provider";
/// Header naming the kind of payload (`status`, `inbound`).
pub const KIND_HEADER: &str = "x-comms-kind";
/// Header repeating the payload's HTTP content type (also set as the AMQP content type, which
/// does not survive a retry hop; the workers read the body by this header).
pub const CONTENT_TYPE_HEADER: &str = "x-comms-content-type";
/// Header with the RFC 3339 time the gateway received the payload.
pub const RECEIVED_AT_HEADER: &str = "x-comms-received-at";

/// One verified payload to hand to the broker.
pub(crate) struct Verified<'a> {
    pub provider: &'static str,
    pub kind: &'static str,
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// The trace context the callback came back with (Twilio: the signed `traceparent` query
    /// parameter the sender added to `StatusCallback`), to make the callback's span its child.
    pub traceparent: Option<String>,
}

/// Publishes a verified payload to `comms.provider` as `<kind>.<provider>`, confirmed.
pub(crate) async fn publish(
    state: &GatewayState,
    payload: Verified<'_>,
) -> Result<(), BrokerError> {
    let mut headers = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(s.into());
    headers.insert(PROVIDER_HEADER.into(), text(payload.provider));
    headers.insert(KIND_HEADER.into(), text(payload.kind));
    headers.insert(CONTENT_TYPE_HEADER.into(), text(payload.content_type));
    let received_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    headers.insert(RECEIVED_AT_HEADER.into(), text(&received_at));
    comms_runtime::trace_context::inject_current(&mut headers);
    let inner = state.inner();
    let exchange = inner.topology.provider_exchange();
    let routing_key = format!("{}.{}", payload.kind, payload.provider);
    inner
        .broker
        .publish(Outgoing {
            exchange: &exchange,
            routing_key: &routing_key,
            body: payload.body,
            headers,
            message_id: Some(uuid::Uuid::new_v4().to_string()),
            content_type: Some(payload.content_type),
        })
        .await
}

/// Publishes and turns the result into the answer: `ok` once confirmed, 503 otherwise.
pub(crate) async fn accept(state: &GatewayState, payload: Verified<'_>, ok: Response) -> Response {
    let (provider, kind) = (payload.provider, payload.kind);
    let bytes = payload.body.len();
    // The callback's span: in the message's trace when the callback carried it back, else the
    // root of its own trace, which the status or replies worker links to the message's.
    let span = tracing::info_span!(
        "provider.callback",
        otel.kind = "server",
        webhook.provider = provider,
        webhook.kind = kind,
    );
    if let Some(traceparent) = &payload.traceparent {
        comms_runtime::trace_context::set_parent_from_traceparent(traceparent, &span);
    }
    match publish(state, payload).instrument(span).await {
        Ok(()) => {
            count(provider, kind, "accepted");
            tracing::info!(
                webhook.provider = provider,
                webhook.kind = kind,
                body.bytes = bytes,
                "webhook accepted"
            );
            ok
        }
        Err(error) => {
            count(provider, kind, "broker_unavailable");
            tracing::warn!(webhook.provider = provider, webhook.kind = kind, %error, "webhook refused with 503: the broker did not confirm");
            reply::broker_unavailable()
        }
    }
}

pub(crate) fn count(provider: &str, kind: &str, outcome: &str) {
    metrics::gateway()
        .webhooks
        .with_label_values(&[provider, kind, outcome])
        .inc();
}

/// The answer for a body that could not be read (413 past `gateway.max_body_bytes`).
pub(crate) fn refused_body(rejection: BytesRejection, provider: &str, kind: &str) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        count(provider, kind, "too_large");
        reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than gateway.max_body_bytes",
        )
    } else {
        rejection.into_response()
    }
}

/// The answer for a body whose content type the endpoint does not take (415
/// `unsupported_content_type`) or whose content cannot be read as it says (400 `invalid_body`).
pub(crate) fn refused_content(error: &BodyError, provider: &str, kind: &str) -> Response {
    let code = error.code();
    count(provider, kind, code);
    tracing::info!(
        webhook.provider = provider,
        webhook.kind = kind,
        reason = code,
        %error,
        "webhook refused: its body cannot be read as its content type says"
    );
    let status = match error {
        BodyError::InvalidJson(_) | BodyError::UnsupportedJson(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    };
    reply::error(status, code, &error.to_string())
}

/// A header's value as text, if present and printable.
pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
