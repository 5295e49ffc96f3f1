//! SendGrid's v3 `mail/send`: bearer key, JSON body, `202 Accepted` with `X-Message-Id`.
//! Our message id travels in `custom_args`, so event webhooks can be matched back to it.

use comms_runtime::settings::Settings;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::{Dispatch, Health, Outbound, health_of, is_transient, retry_after, transport_failure};

#[derive(Deserialize, Default)]
struct Errors {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    message: Option<String>,
}

/// Headers that thread replies back to this message, and (for outreach and review requests) the
/// RFC 8058 one-click unsubscribe pair with a token signed for this contact.
pub(super) fn reply_headers(all: &Settings, message: &Outbound) -> (serde_json::Value, String) {
    let domain = &all.replies.reply_domain;
    let reply_to = format!("reply+{}@{domain}", message.message_id.simple());
    let mut headers = json!({ "Message-ID": format!("<comms.{}@{domain}>", message.message_id) });
    if message.kind == "outreach" || message.kind == "review_request" {
        let token = comms_domain::unsubscribe::sign(
            all.replies.unsubscribe_secret.expose_secret().as_bytes(),
            &comms_domain::unsubscribe::Unsubscribe {
                contact_id: message.contact_id,
                channel: "email".into(),
            },
        );
        let url = format!(
            "{}/unsubscribe/{token}",
            all.gateway.public_url.trim_end_matches('/')
        );
        headers["List-Unsubscribe"] = json!(format!("<{url}>"));
        headers["List-Unsubscribe-Post"] = json!("List-Unsubscribe=One-Click");
    }
    (headers, reply_to)
}

pub async fn send(
    http: &reqwest::Client,
    all: &Settings,
    message: &Outbound,
) -> (Dispatch, Health) {
    let settings = &all.providers.sendgrid;
    let (headers, reply_to) = reply_headers(all, message);
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
        "reply_to": { "email": reply_to },
        "headers": headers,
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
        let provider_message_id = id.unwrap_or_else(|| format!("comms-{}", message.message_id));
        return (
            Dispatch::Sent {
                provider: "sendgrid",
                provider_message_id,
            },
            Health::Up,
        );
    }
    let errors: Errors = response.json().await.unwrap_or_default();
    let detail: Vec<String> = errors
        .errors
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    let reason = format!("sendgrid {}: {}", status.as_u16(), detail.join("; "));
    let dispatch = if is_transient(status) {
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
    };
    (dispatch, health_of(status))
}
