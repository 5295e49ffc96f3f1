//! Twilio's Messages API: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form fields,
//! HTTP basic auth with the account SID and auth token.

use comms_runtime::settings::TwilioSettings;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{Dispatch, Health, Outbound, health_of, is_transient, retry_after, transport_failure};

/// Twilio's error code for a recipient who replied STOP.
pub const UNSUBSCRIBED_RECIPIENT: i64 = 21610;

#[derive(Deserialize)]
struct Created {
    sid: String,
}

#[derive(Deserialize, Default)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

/// The configured `StatusCallback` with the provider call's trace context added as a
/// `traceparent` query parameter, so the gateway can put the callback in the message's trace.
/// Twilio calls the URL exactly as given and signs it whole (query included), so the parameter
/// comes back unchanged and cannot be forged.
fn callback_url(configured: &str) -> String {
    let Some(traceparent) = comms_runtime::trace_context::current_traceparent() else {
        return configured.to_string();
    };
    let separator = if configured.contains('?') { '&' } else { '?' };
    format!("{configured}{separator}traceparent={traceparent}")
}

pub async fn send(
    http: &reqwest::Client,
    settings: &TwilioSettings,
    message: &Outbound,
) -> (Dispatch, Health) {
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        settings.base_url.trim_end_matches('/'),
        settings.account_sid
    );
    let mut form = vec![("To", message.to.as_str()), ("Body", message.body.as_str())];
    // A Messaging Service picks the number itself; a `From` given as well wins at Twilio.
    let service = settings
        .messaging_service_sid
        .as_deref()
        .filter(|s| !s.trim().is_empty());
    if let Some(service) = service {
        form.push(("MessagingServiceSid", service));
    }
    if service.is_none() || !settings.from.trim().is_empty() {
        form.push(("From", settings.from.as_str()));
    }
    let callback = settings.status_callback.as_deref().map(callback_url);
    if let Some(callback) = &callback {
        form.push(("StatusCallback", callback.as_str()));
    }
    let response = http
        .post(&url)
        .basic_auth(
            &settings.account_sid,
            Some(settings.auth_token.expose_secret()),
        )
        .form(&form)
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => return transport_failure("twilio", &e),
    };
    let status = response.status();
    let wait = retry_after(response.headers());
    if status.is_success() {
        return match response.json::<Created>().await {
            Ok(created) => (
                Dispatch::Sent {
                    provider: "twilio",
                    provider_message_id: created.sid,
                },
                Health::Up,
            ),
            Err(e) => (
                Dispatch::Transient {
                    reason: format!(
                        "twilio accepted the message but its answer was unreadable: {e}"
                    ),
                    retry_after: None,
                    maybe_sent: true,
                },
                Health::Degraded,
            ),
        };
    }
    let error: TwilioError = response.json().await.unwrap_or_default();
    let reason = format!(
        "twilio {}{}: {}",
        status.as_u16(),
        error
            .code
            .map(|c| format!(" error {c}"))
            .unwrap_or_default(),
        error.message.unwrap_or_else(|| "no message".into())
    );
    let dispatch = if is_transient(status) {
        Dispatch::Transient {
            reason,
            retry_after: wait,
            maybe_sent: false,
        }
    } else {
        Dispatch::Permanent {
            reason,
            opted_out: error.code == Some(UNSUBSCRIBED_RECIPIENT),
        }
    };
    (dispatch, health_of(status))
}
