//! The SendGrid face: `POST /v3/mail/send`, answering like SendGrid (202 + `X-Message-Id`, SendGrid
//! error JSON) so our email sender can be pointed at the sandbox unchanged.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::callbacks::{self, EmailCallback};
use crate::fault_routes;
use crate::faults::{Channel, Fault};
use crate::ids;
use crate::state::{AppState, Provider, RecordedMessage};

mod request;
use request::{MailSend, validate};

/// A SendGrid error body with one entry per `(message, field)`. SendGrid's schema makes `help` an
/// object when present; the sandbox has no help to give, so it leaves the key out.
pub(crate) fn errors(status: StatusCode, entries: &[(String, Option<String>)]) -> Response {
    let list: Vec<Value> = entries
        .iter()
        .map(|(message, field)| json!({ "message": message, "field": field }))
        .collect();
    (status, Json(json!({ "errors": list }))).into_response()
}

/// SendGrid takes only JSON (parameters such as `charset` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn has_bearer(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
        })
}

/// Personalization-level maps override the top-level ones key by key.
fn merge(
    top: &Option<Map<String, Value>>,
    own: &Option<Map<String, Value>>,
) -> Option<Map<String, Value>> {
    match (top, own) {
        (None, None) => None,
        _ => {
            let mut merged = top.clone().unwrap_or_default();
            merged.extend(own.clone().unwrap_or_default());
            Some(merged)
        }
    }
}

/// The response for an injected fault.
pub(crate) fn fault_response(fault: &Fault) -> Response {
    let status = fault
        .spec
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let default = match status.as_u16() {
        400 => "Bad Request",
        401 => "authorization required",
        403 => "access forbidden",
        413 => "content too large",
        429 => "too many requests",
        500 => "internal server error",
        503 => "service unavailable",
        _ => "sandbox injected fault",
    };
    let message = fault
        .spec
        .message
        .clone()
        .unwrap_or_else(|| default.to_owned());
    let mut response = errors(status, &[(message, None)]);
    if let Some(secs) = fault.spec.retry_after
        && matches!(status.as_u16(), 429 | 503)
    {
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, secs.into());
        if status == StatusCode::TOO_MANY_REQUESTS {
            let reset = Utc::now().timestamp().saturating_add_unsigned(secs);
            headers.insert("X-RateLimit-Limit", HeaderValue::from_static("600"));
            headers.insert("X-RateLimit-Remaining", HeaderValue::from_static("0"));
            headers.insert("X-RateLimit-Reset", reset.into());
        }
    }
    response
}

/// `POST /v3/mail/send`
pub(crate) async fn send_mail(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !has_bearer(&headers) {
        return errors(
            StatusCode::UNAUTHORIZED,
            &[("authorization required".into(), None)],
        );
    }
    if !is_json(&headers) {
        let message = "Content-Type should be application/json.";
        return errors(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &[(message.into(), None)],
        );
    }
    let parsed = serde_json::from_slice::<Value>(&body)
        .and_then(|raw| Ok((MailSend::deserialize(&raw)?, raw)));
    let (mail, raw) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::debug!(error = %e, "mail/send body is not the expected JSON");
            return errors(StatusCode::BAD_REQUEST, &[("Bad Request".into(), None)]);
        }
    };
    let problems = validate(&mail);
    if !problems.is_empty() {
        return errors(StatusCode::BAD_REQUEST, &problems);
    }
    let recipients: Vec<&str> = mail
        .personalizations
        .iter()
        .flat_map(|p| p.to.iter().filter_map(|a| a.email.as_deref()))
        .collect();
    let fault = state
        .faults()
        .take_request_fault(Channel::Email, &recipients);
    let late = match fault {
        Some(fault) if fault.spec.accept => Some(fault),
        Some(fault) => {
            tracing::info!(fault = %fault.id, "sendgrid send faulted");
            return fault_routes::respond(&state, &fault, fault_response).await;
        }
        None => None,
    };

    let message_id = ids::sendgrid_message_id();
    let from = mail
        .from
        .as_ref()
        .and_then(|f| f.email.clone())
        .unwrap_or_default();
    let text = mail
        .content
        .iter()
        .find(|c| c.kind.as_deref() == Some("text/plain"))
        .or_else(|| mail.content.first())
        .and_then(|c| c.value.clone())
        .unwrap_or_default();
    let now = Utc::now();
    for p in &mail.personalizations {
        let custom_args = merge(&mail.custom_args, &p.custom_args);
        for email in p.to.iter().filter_map(|a| a.email.clone()) {
            state.record(RecordedMessage {
                provider: Provider::Sendgrid,
                id: message_id.clone(),
                to: email.clone(),
                from: from.clone(),
                subject: p.subject.clone().or_else(|| mail.subject.clone()),
                body: text.clone(),
                custom_args: custom_args.clone(),
                headers: merge(&mail.headers, &p.headers),
                request: raw.clone(),
                received_at: now,
                status: None,
                error_code: None,
            });
            let outcome = state.faults().take_callback_outcome(Channel::Email, &email);
            callbacks::schedule_email(
                &state,
                EmailCallback {
                    message_id: message_id.clone(),
                    email,
                    custom_args: custom_args.clone(),
                    outcome,
                },
            );
        }
    }
    tracing::info!(%message_id, recipients = recipients.len(), "sendgrid mail accepted");
    if !fault_routes::hang_after_accepting(&state, late.as_ref()).await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(value) = HeaderValue::from_str(&message_id) {
        response.headers_mut().insert("X-Message-Id", value);
    }
    response
}
