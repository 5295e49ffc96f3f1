//! Twilio's webhooks: status callbacks (`POST /webhooks/twilio/status`) and inbound messages
//! (`POST /webhooks/twilio/inbound`), both signed with `X-Twilio-Signature`.
//!
//! The signed URL is rebuilt from `gateway.public_url` plus the request's path and query, because
//! behind a load balancer the URL the gateway sees is not the one Twilio called. A missing
//! signature is 400 and a wrong one 403, as in Twilio's own middleware. The body is read by its
//! content type (`comms_domain::webhook_body`: a form or JSON, anything else 415) before the
//! signature is checked over what was read, so the workers act only on signed content.
//!
//! With a second Twilio account (`providers.twilio_secondary`, failover), each account signs its
//! callbacks with its own auth token: the token of the account the form's `AccountSid` names is
//! tried first, then every other configured token, each over exactly the same URL and fields.
//! The `AccountSid` only orders the attempts; it is itself covered by the signature.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};

use comms_domain::webhook_body;

use super::{Verified, accept, count, header_text, refused_body, refused_content};
use crate::reply;
use crate::state::GatewayState;
use crate::verify::twilio::{Refusal, SIGNATURE_HEADER, verify};

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
    // The body is read as the workers will read it; the signature must cover exactly that.
    let content_type = header_text(headers, header::CONTENT_TYPE.as_str());
    let fields = match webhook_body::twilio_fields(content_type, &body) {
        Ok(fields) => fields,
        Err(error) => return refused_content(&error, "twilio", kind),
    };
    let path = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let url = format!("{}{path}", state.inner().public_url);
    if let Err(refusal) = verify_any(state, &url, &fields, &body, signature) {
        count("twilio", kind, refusal.code());
        tracing::info!(
            webhook.provider = "twilio",
            webhook.kind = kind,
            reason = refusal.code(),
            "webhook refused: not signed by Twilio"
        );
        return reply::error(StatusCode::FORBIDDEN, refusal.code(), &refusal.to_string());
    }
    let ok = if kind == "inbound" {
        ([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response()
    } else {
        StatusCode::OK.into_response()
    };
    let payload = Verified {
        provider: "twilio",
        kind,
        // Forwarded as received: the workers read the body by it, as the gateway just did.
        content_type: content_type.unwrap_or(fields.format.media_type()),
        body: &body,
        traceparent: signed_traceparent(uri),
    };
    accept(state, payload, ok).await
}

/// [`verify`] with each configured account's token, the one `AccountSid` names first; the first
/// success wins, otherwise the refusal of the first attempt.
fn verify_any(
    state: &GatewayState,
    url: &str,
    fields: &webhook_body::Fields,
    body: &[u8],
    signature: &str,
) -> Result<(), Refusal> {
    let named = fields
        .fields
        .iter()
        .find(|(name, _)| name == "AccountSid")
        .map(|(_, value)| value.as_str());
    let accounts = &state.inner().twilio_accounts;
    let mut ordered: Vec<&SecretString> = Vec::with_capacity(accounts.len());
    ordered.extend(
        accounts
            .iter()
            .filter(|(sid, _)| Some(sid.as_str()) == named)
            .map(|(_, t)| t),
    );
    ordered.extend(
        accounts
            .iter()
            .filter(|(sid, _)| Some(sid.as_str()) != named)
            .map(|(_, t)| t),
    );
    let mut first = None;
    for token in ordered {
        match verify(
            token.expose_secret().as_bytes(),
            url,
            fields,
            body,
            signature,
        ) {
            Ok(()) => return Ok(()),
            Err(refusal) => {
                first.get_or_insert(refusal);
            }
        }
    }
    Err(first.unwrap_or(Refusal::InvalidSignature))
}

/// The `traceparent` query parameter of the signed URL (the sender adds it to `StatusCallback`;
/// the signature covers it).
fn signed_traceparent(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(name, _)| name == "traceparent")
        .map(|(_, value)| value.into_owned())
}
