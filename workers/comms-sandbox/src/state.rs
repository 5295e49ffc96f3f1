//! Shared server state: what the sandbox has accepted, which faults are armed, and the settings the
//! handlers and the callback tasks need. Kept apart from the handlers so both provider faces and the
//! inspection API read and write the same records.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::SandboxConfig;
use crate::faults::FaultBook;

/// Which provider face accepted a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Twilio,
    Sendgrid,
}

/// One accepted message, as `GET /sandbox/messages` returns it. A SendGrid send with several
/// recipients is recorded once per recipient, all sharing the same `id` (the `X-Message-Id`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedMessage {
    pub provider: Provider,
    /// The Twilio message SID (`SM…`) or the SendGrid `X-Message-Id`.
    pub id: String,
    pub to: String,
    /// The sender: `From` (or `MessagingServiceSid` when no `From` was given) or `from.email`.
    pub from: String,
    pub subject: Option<String>,
    pub body: String,
    pub custom_args: Option<Map<String, Value>>,
    pub headers: Option<Map<String, Value>>,
    /// The request as the provider face received it: SendGrid's JSON body, or Twilio's form
    /// parameters as an object of strings (a repeated name becomes an array). Tests check it
    /// against the providers' published schemas.
    #[serde(default)]
    pub request: Value,
    pub received_at: DateTime<Utc>,
    /// Twilio only: the message's status at the provider as `GET …/Messages/{Sid}.json` answers
    /// it — the final one at once (the sandbox's carrier answers instantly), whether or not its
    /// callbacks reach the gateway.
    #[serde(default)]
    pub status: Option<String>,
    /// Twilio only: the error code of an `undelivered` or `failed` message.
    #[serde(default)]
    pub error_code: Option<u32>,
}

/// Settings the handlers and callback tasks read; built once from [`SandboxConfig`].
pub(crate) struct Settings {
    pub config: SandboxConfig,
    pub sendgrid_public_key: String,
}

/// Cheap-to-clone handle on everything the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub settings: Arc<Settings>,
    pub messages: Arc<Mutex<Vec<RecordedMessage>>>,
    pub faults: Arc<Mutex<FaultBook>>,
    pub http: reqwest::Client,
    /// Flips to `true` when the server starts shutting down: hanging faults and pending callbacks
    /// stop waiting.
    pub stopping: watch::Receiver<bool>,
}

impl AppState {
    pub fn new(config: SandboxConfig, stopping: watch::Receiver<bool>) -> std::io::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(std::io::Error::other)?;
        let sendgrid_public_key = config.sendgrid_signer.public_key_base64().to_owned();
        Ok(Self {
            settings: Arc::new(Settings {
                config,
                sendgrid_public_key,
            }),
            messages: Arc::default(),
            faults: Arc::default(),
            http,
            stopping,
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.settings.config
    }

    /// Locks the message list. A poisoned lock only means a handler panicked mid-push; the list is
    /// still usable, so recover it rather than failing every later request.
    pub fn messages(&self) -> MutexGuard<'_, Vec<RecordedMessage>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultBook> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, message: RecordedMessage) {
        self.messages().push(message);
    }

    /// Sleeps for `duration`, returning early (with `false`) if the server starts shutting down.
    pub async fn sleep_unless_stopping(&self, duration: Duration) -> bool {
        let mut stopping = self.stopping.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = stopping.wait_for(|s| *s) => false,
        }
    }
}
