//! SendGrid's v3 `mail/send`: bearer key, JSON body, `202 Accepted` with `X-Message-Id`.
//! Our message id travels in `custom_args`, so event webhooks can be matched back to it.

use comms_shared::settings::SendgridSettings;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::{Dispatch, Outbound, is_transient, retry_after, transport_failure};

#[derive(Deserialize, Default)]
struct Errors {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    message: Option<String>,
}

pub async fn send(
    http: &reqwest::Client,
    settings: &SendgridSettings,
    message: &Outbound,
) -> Dispatch {
    let url = format!("{}/v3/mail/send", settings.base_url.trim_end_matches('/'));
    let mut from = json!({ "email": settings.from });
    if let Some(name) = &settings.from_name {
        from["name"] = json!(name);
    }
    let body = json!({
        "personalizations": [{
            "to": [{ "email": message.to }],
            "custom_args": { "comms_message_id": message.message_id.to_string() },
        }],
        "from": from,
        "subject": message.subject.clone().unwrap_or_default(),
        "content": [{ "type": "text/plain", "value": message.body }],
    });
    let response = http
        .post(&url)
        .bearer_auth(settings.api_key.expose_secret())
        .json(&body)
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => return transport_failure("sendgrid", &e),
    };
    let status = response.status();
    let wait = retry_after(response.headers());
    if status.is_success() {
        let id = response
            .headers()
            .get("x-message-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        return match id {
            Some(id) => Dispatch::Sent {
                provider: "sendgrid",
                provider_message_id: id,
            },
            None => Dispatch::Sent {
                provider: "sendgrid",
                provider_message_id: format!("comms-{}", message.message_id),
            },
        };
    }
    let errors: Errors = response.json().await.unwrap_or_default();
    let detail: Vec<String> = errors
        .errors
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    let reason = format!("sendgrid {}: {}", status.as_u16(), detail.join("; "));
    if is_transient(status) {
        Dispatch::Transient {
            reason,
            retry_after: wait,
            maybe_sent: false,
        }
    } else {
        Dispatch::Permanent {
            reason,
            opted_out: false,
        }
    }
}
