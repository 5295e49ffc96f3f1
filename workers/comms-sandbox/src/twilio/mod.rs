//! The Twilio face: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, answering like Twilio
//! (201 message resource, Twilio error JSON) so our SMS sender can be pointed at the sandbox
//! unchanged. What Twilio refuses, and how, lives in `request`.

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use crate::callbacks::{self, SmsCallback};
use crate::fault_routes;
use crate::faults::{Channel, Fault};
use crate::ids;
use crate::state::{AppState, Provider, RecordedMessage};

pub(crate) mod request;
use request::SmsRequest;

/// A Twilio error body (`code`, `message`, `more_info`, `status`).
pub(crate) fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    let body = json!({
        "code": code,
        "message": message.into(),
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

fn known_message(code: u32) -> Option<&'static str> {
    Some(match code {
        20003 => "Authenticate",
        20429 => "Too Many Requests",
        20500 => "An internal server error has occurred",
        20503 => "Service is unavailable. Please try again",
        21211 => "The 'To' number is not a valid phone number.",
        21408 => {
            "Permission to send an SMS has not been enabled for the region indicated by the 'To' number"
        }
        21610 => "Attempt to send to unsubscribed recipient",
        21612 => "The 'To' phone number is not currently reachable via SMS",
        21614 => "'To' number is not a valid mobile number",
        30003 => "Unreachable destination handset",
        30005 => "Unknown destination handset",
        30006 => "Landline or unreachable carrier",
        30007 => "Message filtered",
        30008 => "Unknown error",
        _ => return None,
    })
}

/// The response for an injected fault.
pub(crate) fn fault_response(fault: &Fault) -> Response {
    let status = fault
        .spec
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = fault
        .spec
        .error_code
        .unwrap_or(20_000 + u32::from(status.as_u16()));
    let message = fault
        .spec
        .message
        .clone()
        .or_else(|| known_message(code).map(str::to_owned))
        .unwrap_or_else(|| format!("Sandbox injected fault {}", fault.id));
    let mut response = error(status, code, message);
    if let Some(secs) = fault.spec.retry_after
        && matches!(status.as_u16(), 429 | 503)
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.into());
    }
    response
}

/// `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`
pub(crate) async fn create_message(
    State(state): State<AppState>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(refusal) = request::authenticate(&headers, state.config(), &account_sid) {
        return refusal.into_response();
    }
    let params = match form {
        Ok(Form(params)) => params,
        // Twilio reads parameters only from a form body; any other body carries none.
        Err(FormRejection::InvalidFormContentType(_)) => Vec::new(),
        Err(rejection) => return error(StatusCode::BAD_REQUEST, 20001, rejection.body_text()),
    };
    let SmsRequest {
        to,
        from,
        service_sid,
        body,
        status_callback,
        params,
    } = match request::check(&params) {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    let sender = from
        .clone()
        .or_else(|| service_sid.clone())
        .unwrap_or_default();

    let fault = state.faults().take_request_fault(Channel::Sms, &[&to]);
    let late = match fault {
        Some(fault) if fault.spec.accept => Some(fault),
        Some(fault) => {
            tracing::info!(fault = %fault.id, "twilio send faulted");
            return fault_routes::respond(&state, &fault, fault_response).await;
        }
        None => None,
    };

    let sid = ids::twilio_sid("SM");
    let now = Utc::now();
    let outcome = state.faults().take_callback_outcome(Channel::Sms, &to);
    let (statuses, error_code) = callbacks::sms_statuses(outcome.as_ref());
    let recorded = RecordedMessage {
        provider: Provider::Twilio,
        id: sid.clone(),
        to: to.clone(),
        from: sender,
        subject: None,
        body: body.clone(),
        custom_args: None,
        headers: None,
        request: params,
        received_at: now,
        status: statuses.last().map(|s| (*s).to_owned()),
        error_code,
    };
    let mut resource = resource(
        &account_sid,
        &recorded,
        from.as_deref(),
        service_sid.as_deref(),
    );
    // Created: the answer to the create call is the resource's first status.
    resource["status"] = json!("queued");
    resource["error_code"] = json!(null);
    state.record(recorded);
    tracing::info!(%sid, "twilio message accepted");

    callbacks::schedule_sms(
        &state,
        SmsCallback {
            sid,
            account_sid,
            from,
            to,
            messaging_service_sid: service_sid,
            status_callback,
            outcome,
        },
    );
    if !fault_routes::hang_after_accepting(&state, late.as_ref()).await {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    (StatusCode::CREATED, Json(resource)).into_response()
}

/// The Message resource as Twilio's API returns it.
fn resource(
    account_sid: &str,
    message: &RecordedMessage,
    from: Option<&str>,
    service_sid: Option<&str>,
) -> serde_json::Value {
    let uri = format!("/2010-04-01/Accounts/{account_sid}/Messages/{}", message.id);
    let date = message.received_at.to_rfc2822();
    json!({
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": message.body,
        "date_created": date,
        "date_sent": null,
        "date_updated": date,
        "direction": "outbound-api",
        "error_code": message.error_code,
        "error_message": message.error_code.and_then(known_message),
        "from": from,
        "messaging_service_sid": service_sid,
        "num_media": "0",
        "num_segments": comms_domain::sms::analyse(&message.body).segments.to_string(),
        "price": null,
        "price_unit": "USD",
        "sid": message.id,
        "status": message.status,
        "subresource_uris": { "media": format!("{uri}/Media.json") },
        "to": message.to,
        "uri": format!("{uri}.json"),
    })
}

/// `GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`: the message's current status, as
/// Twilio answers it (404 code 20404 for a SID it does not know).
pub(crate) async fn fetch_message(
    State(state): State<AppState>,
    Path((account_sid, resource_name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = request::authenticate(&headers, state.config(), &account_sid) {
        return refusal.into_response();
    }
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            20404,
            format!(
                "The requested resource /2010-04-01/Accounts/{account_sid}/Messages/{resource_name} was not found"
            ),
        )
    };
    let Some(sid) = resource_name.strip_suffix(".json") else {
        return not_found();
    };
    let found = state
        .messages()
        .iter()
        .find(|m| m.provider == Provider::Twilio && m.id == sid)
        .cloned();
    let Some(message) = found else {
        return not_found();
    };
    let from = message.request.get("From").and_then(|v| v.as_str());
    let service = message
        .request
        .get("MessagingServiceSid")
        .and_then(|v| v.as_str());
    (
        StatusCode::OK,
        Json(resource(&account_sid, &message, from, service)),
    )
        .into_response()
}
