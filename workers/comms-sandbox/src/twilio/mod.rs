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
    if let Some(fault) = fault {
        tracing::info!(fault = %fault.id, "twilio send faulted");
        return fault_routes::respond(&state, &fault, fault_response).await;
    }

    let sid = ids::twilio_sid("SM");
    let now = Utc::now();
    state.record(RecordedMessage {
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
    });
    tracing::info!(%sid, "twilio message accepted");

    let outcome = state.faults().take_callback_outcome(Channel::Sms, &to);
    callbacks::schedule_sms(
        &state,
        SmsCallback {
            sid: sid.clone(),
            account_sid: account_sid.clone(),
            from: from.clone(),
            to: to.clone(),
            messaging_service_sid: service_sid.clone(),
            status_callback,
            outcome,
        },
    );

    let uri = format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}");
    let date = now.to_rfc2822();
    let resource = json!({
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": date,
        "date_sent": null,
        "date_updated": date,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from,
        "messaging_service_sid": service_sid,
        "num_media": "0",
        "num_segments": comms_domain::sms::analyse(&body).segments.to_string(),
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": { "media": format!("{uri}/Media.json") },
        "to": to,
        "uri": format!("{uri}.json"),
    });
    (StatusCode::CREATED, Json(resource)).into_response()
}
