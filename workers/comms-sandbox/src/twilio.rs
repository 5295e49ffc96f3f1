//! The Twilio face: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, answering like Twilio
//! (201 message resource, Twilio error JSON) so our SMS sender can be pointed at the sandbox
//! unchanged.

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use serde_json::json;

use crate::callbacks::{self, SmsCallback};
use crate::faults::{self, Fault};
use crate::state::{AppState, Channel, Provider, RecordedMessage};
use crate::{ids, segments};

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

/// Basic auth must be present and well formed; any account SID / token pair is accepted.
fn has_basic_auth(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let decoded = String::from_utf8_lossy(&decoded);
    matches!(decoded.split_once(':'), Some((user, _)) if !user.is_empty())
}

pub(crate) fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
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
    if !has_basic_auth(&headers) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            20003,
            "Authentication Error - No credentials provided",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
        return response;
    }
    let params = match form {
        Ok(Form(params)) => params,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, 20001, rejection.body_text()),
    };
    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let Some(to) = field("To") else {
        return error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        );
    };
    if !is_e164(&to) {
        let message = format!("The 'To' number {to} is not a valid phone number.");
        return error(StatusCode::BAD_REQUEST, 21211, message);
    }
    let from = field("From");
    let service_sid = field("MessagingServiceSid");
    let Some(sender) = from.clone().or_else(|| service_sid.clone()) else {
        return error(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' phone number is required.",
        );
    };
    let Some(body) = field("Body") else {
        return error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    };
    if body.chars().count() > 1600 {
        let message = "The concatenated message body exceeds the 1600 character limit.";
        return error(StatusCode::BAD_REQUEST, 21617, message);
    }

    let fault = state.faults().take_request_fault(Channel::Sms, &[&to]);
    if let Some(fault) = fault {
        tracing::info!(fault = %fault.id, "twilio send faulted");
        return faults::respond(&state, &fault, fault_response).await;
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
            status_callback: field("StatusCallback"),
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
        "num_segments": segments::count_segments(&body).to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_shape() {
        assert!(is_e164("+15005550006"));
        assert!(is_e164("+12345678"));
        assert!(!is_e164("+1234567"));
        assert!(!is_e164("15005550006"));
        assert!(!is_e164("+1500555000612345"));
        assert!(!is_e164("+1500-555-0006"));
    }

    #[test]
    fn basic_auth_must_be_present() {
        let mut headers = HeaderMap::new();
        assert!(!has_basic_auth(&headers));
        let creds = STANDARD.encode("ACxxx:token");
        let value = format!("Basic {creds}");
        headers.insert(header::AUTHORIZATION, value.parse().expect("header value"));
        assert!(has_basic_auth(&headers));
        headers.insert(
            header::AUTHORIZATION,
            "Bearer abc".parse().expect("header value"),
        );
        assert!(!has_basic_auth(&headers));
    }
}
