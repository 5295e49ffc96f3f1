//! `POST /v1/messages`: the enqueue API for apps that do not speak AMQP.
//!
//! The body is a send request (v1), validated by the same [`parse_send_request`] the sender
//! uses, so HTTP and AMQP refuse exactly the same inputs with the same texts. A valid request is
//! published in its canonical form to `comms.send` (routing key `send.<channel>`) with a confirm,
//! and only then answered 202. The canonical form is checked first with the sender's own limits
//! ([`canonical_bytes`]): normalising can lengthen a request past 64 KiB, and the caller must hear
//! that now (413), not never.
//!
//! Idempotency: if a message with the request's idempotency key is already recorded, the answer
//! is 202 with that message's id and nothing is published again. If it is not recorded yet (or the
//! lookup fails), the request is published and the answer has no `message_id` — the sender
//! assigns it when it records the message — but the idempotency key, which `commsctl message
//! <key>` follows. A second publish of the same key — two concurrent calls, or a retry before the
//! sender recorded the first — is harmless: the sender records one message per key.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use comms_domain::contract::{
    CONTENT_TYPE, REASON_PAYLOAD_TOO_LARGE, RequestErrors, canonical_bytes, parse_send_request,
};
use comms_domain::webhook_body::{self, Format};
use comms_runtime::amqp::Outgoing;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::{Authorized, Enqueue};
use crate::metrics;
use crate::reply;
use crate::state::GatewayState;
use crate::status_api::{Prior, Submission};

/// Header on a published request naming the API key (by name) that submitted it.
pub const SUBMITTED_BY_HEADER: &str = "x-comms-submitted-by";

fn count(outcome: &str) {
    metrics::gateway()
        .enqueue
        .with_label_values(&[outcome])
        .inc();
}

/// 202: the idempotency key always (the caller follows the message by it), the message id only
/// once it exists.
fn accepted(key: &str, message_id: Option<Uuid>) -> Response {
    let mut body = json!({ "idempotency_key": key, "status": "accepted" });
    if let Some(id) = message_id {
        body["message_id"] = json!(id);
    }
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// The refusal of an invalid request: 413 when too large, 422 otherwise, every problem listed.
fn refused(errors: &RequestErrors, key_name: &str) -> Response {
    count("invalid");
    let status = if errors.reason_code() == REASON_PAYLOAD_TOO_LARGE {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    tracing::info!(api.key_name = %key_name, reason = errors.reason_code(), errors = errors.errors().len(), "send request refused");
    let body = json!({ "reason": errors.reason_code(), "errors": errors.errors() });
    (status, Json(body)).into_response()
}

/// `POST /v1/messages`, in the span that starts the message's trace: a child of the caller's
/// W3C `traceparent` header when it sent one, else a new trace. The published request carries
/// this span's context, so the sender continues it.
pub async fn enqueue(
    State(state): State<GatewayState>,
    auth: Authorized<Enqueue>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The body is read as JSON only when the caller says it is JSON: a form or text body that
    // happens to parse would otherwise be accepted as something its sender did not mean.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or("(not text)"));
    if let Err(error) = webhook_body::format(content_type, &[Format::Json]) {
        count("invalid");
        return reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error.code(),
            &error.to_string(),
        );
    }
    let span = tracing::info_span!(
        "enqueue",
        otel.kind = "server",
        api.key_name = %auth.caller.name,
    );
    comms_runtime::trace_context::set_parent_from_http(&headers, &span);
    submit(state, auth, body).instrument(span).await
}

async fn submit(
    state: GatewayState,
    auth: Authorized<Enqueue>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            count("invalid");
            return reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                REASON_PAYLOAD_TOO_LARGE,
                "the body is larger than gateway.max_body_bytes",
            );
        }
        Err(rejection) => return rejection.into_response(),
    };
    // What the sender will receive is the canonical copy: both must pass its checks.
    let checked = parse_send_request(&body)
        .and_then(|request| canonical_bytes(&request).map(|canonical| (request, canonical)));
    let (request, canonical) = match checked {
        Ok(checked) => checked,
        Err(errors) => return refused(&errors, &auth.caller.name),
    };
    let inner = state.inner();
    // One statement (shared with the requests arriving at the same moment): the message already
    // recorded under the key, if any; if none, which app this key belongs to (for
    // `GET /v1/messages` and the events' `app`), recorded before the publish so the message is never readable by the wrong app. If the database is down the
    // request still goes out (the sender dedupes) and reads fall back on the request's `source`.
    let existing = inner
        .submissions
        .write(Submission {
            key: request.idempotency_key.clone(),
            app: auth.caller.name.clone(),
        })
        .await;
    match existing {
        Ok(Prior::Recorded(id)) => {
            count("duplicate");
            tracing::info!(api.key_name = %auth.caller.name, message.id = %id, "send request already recorded; not published again");
            return accepted(&request.idempotency_key, Some(id));
        }
        Ok(Prior::Taken) => {
            count("invalid");
            return reply::error(
                StatusCode::CONFLICT,
                "idempotency_key_taken",
                "another app already used this idempotency key, so this request could never be sent; nothing was accepted: use keys your app owns (prefix them with the app's name)",
            );
        }
        Ok(Prior::New) => {}
        Err(error) => {
            // Publishing anyway is safe: the sender dedupes on the idempotency key.
            tracing::warn!(%error, "idempotency lookup failed; publishing (the sender dedupes)");
        }
    }
    let mut headers = FieldTable::default();
    headers.insert(
        SUBMITTED_BY_HEADER.into(),
        AMQPValue::LongString(auth.caller.name.as_str().into()),
    );
    comms_runtime::trace_context::inject_current(&mut headers);
    let exchange = inner.topology.send_exchange();
    let published = inner
        .broker
        .publish(Outgoing {
            exchange: &exchange,
            routing_key: request.routing_key(),
            body: &canonical,
            headers,
            message_id: Some(request.idempotency_key.clone()),
            content_type: Some(CONTENT_TYPE),
        })
        .await;
    match published {
        Ok(()) => {
            count("accepted");
            tracing::info!(api.key_name = %auth.caller.name, routing_key = request.routing_key(), "send request enqueued");
            accepted(&request.idempotency_key, None)
        }
        Err(error) => {
            count("broker_unavailable");
            tracing::warn!(api.key_name = %auth.caller.name, %error, "send request refused with 503: the broker did not confirm");
            reply::broker_unavailable()
        }
    }
}
