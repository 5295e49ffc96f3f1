//! One signed POST to one webhook, to an address that passed the SSRF rule at this very moment.
//!
//! Redirects are not followed (a redirect could point inside), the connection goes to the address
//! that was checked (`reqwest`'s per-host resolve override), and every attempt has a timeout.

use std::time::Duration;

use comms_domain::events::{
    WEBHOOK_EVENT_ID_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, sign_webhook,
};
use comms_domain::webhooks::check_url;
use uuid::Uuid;

use super::store::Webhook;

/// The result of one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
    pub fn describe(&self) -> String {
        match (&self.error, self.status) {
            (Some(error), _) => error.clone(),
            (None, Some(status)) => format!("answered {status}"),
            (None, None) => "no answer".into(),
        }
    }
}

pub struct Deliverer {
    timeout: Duration,
    allow_private: bool,
}

impl Deliverer {
    pub fn new(timeout: Duration, allow_private: bool) -> anyhow::Result<Self> {
        Ok(Self {
            timeout,
            allow_private,
        })
    }

    pub async fn post(&self, hook: &Webhook, event_id: Uuid, body: &[u8]) -> Attempt {
        let checked = match check_url(&hook.url, self.allow_private).await {
            Ok(checked) => checked,
            Err(error) => {
                return Attempt {
                    status: None,
                    error: Some(error.to_string()),
                };
            }
        };
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(address) = checked.addresses.first() {
            builder = builder.resolve(&checked.host, *address);
        }
        let client = match builder.build() {
            Ok(client) => client,
            Err(error) => {
                return Attempt {
                    status: None,
                    error: Some(format!("http client: {error}")),
                };
            }
        };
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign_webhook(hook.secret.as_bytes(), timestamp, body);
        let sent = client
            .post(checked.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(WEBHOOK_TIMESTAMP_HEADER, timestamp.to_string())
            .header(WEBHOOK_SIGNATURE_HEADER, signature)
            .header(WEBHOOK_EVENT_ID_HEADER, event_id.to_string())
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(response) => Attempt {
                status: Some(response.status().as_u16()),
                error: None,
            },
            Err(error) if error.is_timeout() => Attempt {
                status: None,
                error: Some(format!("timed out after {:?}", self.timeout)),
            },
            Err(error) => Attempt {
                status: None,
                error: Some(format!("request failed: {}", without_url(&error))),
            },
        }
    }
}

/// reqwest's errors name the URL, which may carry a token in its path or query: log the kind only.
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "could not connect"
    } else if error.is_request() {
        "request error"
    } else if error.is_body() {
        "body error"
    } else {
        "error"
    };
    kind.to_string()
}
