//! Signed delivery callbacks, sent like the providers send them (Twilio status callbacks, SendGrid
//! Event Webhook batches) so the gateway's webhook handling is exercised end to end in local runs
//! and tests. Best effort: a background task per message, a few quick retries, never blocking the
//! API response, and stopped when the server shuts down.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};

use crate::faults::{CallbackOutcome, CallbackStatus};
use crate::ids;
use crate::signing::{
    SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER, TWILIO_SIGNATURE_HEADER, twilio_signature,
};
use crate::state::AppState;

/// What the Twilio status callbacks for one accepted SMS need.
pub(crate) struct SmsCallback {
    pub sid: String,
    pub account_sid: String,
    pub from: Option<String>,
    pub to: String,
    pub messaging_service_sid: Option<String>,
    pub status_callback: Option<String>,
    pub outcome: Option<CallbackOutcome>,
}

/// What the SendGrid events for one accepted recipient need.
pub(crate) struct EmailCallback {
    pub message_id: String,
    pub email: String,
    pub custom_args: Option<Map<String, Value>>,
    pub outcome: Option<CallbackOutcome>,
}

fn gateway(state: &AppState) -> Option<String> {
    let url = state.config().gateway_url.as_deref()?;
    Some(url.trim_end_matches('/').to_owned())
}

/// Runs `work` in the background until it ends or the server starts shutting down.
fn spawn_until_stopping(state: &AppState, work: impl Future<Output = ()> + Send + 'static) {
    let mut stopping = state.stopping.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = work => {}
            _ = stopping.wait_for(|s| *s) => {}
        }
    });
}

/// The statuses an accepted SMS goes through (the last is final) and its error code, for the
/// callback outcome a fault chose (none: `sent`, `delivered`).
pub(crate) fn sms_statuses(
    outcome: Option<&CallbackOutcome>,
) -> (&'static [&'static str], Option<u32>) {
    match outcome {
        None => (&["sent", "delivered"], None),
        Some(o) => match o.status {
            CallbackStatus::Undelivered => (
                &["sent", "undelivered"],
                Some(o.error_code.unwrap_or(30003)),
            ),
            CallbackStatus::Failed => (&["failed"], Some(o.error_code.unwrap_or(30008))),
            _ => (&["sent", "delivered"], None),
        },
    }
}

/// Queues `sent` then `delivered` (or the fault's outcome) for an accepted SMS. No gateway URL
/// configured means no callbacks at all.
pub(crate) fn schedule_sms(state: &AppState, job: SmsCallback) {
    let Some(gateway) = gateway(state) else {
        return;
    };
    let url = job
        .status_callback
        .clone()
        .unwrap_or_else(|| format!("{gateway}/webhooks/twilio/status"));
    let (statuses, error_code) = sms_statuses(job.outcome.as_ref());
    let state2 = state.clone();
    spawn_until_stopping(state, async move {
        for status in statuses {
            let mut params: Vec<(&str, String)> = vec![
                ("MessageSid", job.sid.clone()),
                ("SmsSid", job.sid.clone()),
                ("AccountSid", job.account_sid.clone()),
                ("To", job.to.clone()),
                ("MessageStatus", (*status).to_owned()),
                ("SmsStatus", (*status).to_owned()),
                ("ApiVersion", "2010-04-01".to_owned()),
            ];
            if let Some(from) = &job.from {
                params.push(("From", from.clone()));
            }
            if let Some(service) = &job.messaging_service_sid {
                params.push(("MessagingServiceSid", service.clone()));
            }
            if *status != "sent" {
                if let Some(code) = error_code {
                    params.push(("ErrorCode", code.to_string()));
                }
                if *status != "failed" {
                    params.push((
                        "RawDlrDoneDate",
                        Utc::now().format("%y%m%d%H%M").to_string(),
                    ));
                }
            }
            let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let signature = twilio_signature(&state2.config().twilio_auth_token, &url, &pairs);
            let post = || {
                state2
                    .http
                    .post(&url)
                    .header(TWILIO_SIGNATURE_HEADER, &signature)
                    .form(&params)
            };
            if !deliver(&state2, post, "twilio status callback").await {
                return;
            }
        }
    });
}

fn email_event(job: &EmailCallback, event: &str) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("email".into(), json!(job.email));
    fields.insert("timestamp".into(), json!(Utc::now().timestamp()));
    fields.insert("event".into(), json!(event));
    fields.insert("sg_event_id".into(), json!(ids::sendgrid_event_id()));
    let suffix: u32 = rand::rng().random();
    let sg_message_id = format!("{}.filter0001.16648.{suffix:08X}.0", job.message_id);
    fields.insert("sg_message_id".into(), json!(sg_message_id));
    let smtp_id = format!("<{}@sandbox.comms-fleet.local>", job.message_id);
    fields.insert("smtp-id".into(), json!(smtp_id));
    // Custom args are echoed at the top level but never replace SendGrid's own fields.
    for (key, value) in job.custom_args.iter().flatten() {
        fields.entry(key.clone()).or_insert_with(|| value.clone());
    }
    fields
}

fn outcome_event(job: &EmailCallback) -> Map<String, Value> {
    let outcome = job.outcome.as_ref();
    let reason = |default: &str| {
        json!(
            outcome
                .and_then(|o| o.message.clone())
                .unwrap_or_else(|| default.to_owned())
        )
    };
    let extra = |event: &str, more: &[(&str, Value)]| {
        let mut fields = email_event(job, event);
        for (k, v) in more {
            fields.insert((*k).to_owned(), v.clone());
        }
        fields
    };
    match outcome.map(|o| o.status) {
        Some(CallbackStatus::Bounce) => extra(
            "bounce",
            &[
                ("type", json!("bounce")),
                ("status", json!("5.1.1")),
                (
                    "reason",
                    reason("550 5.1.1 The email account that you tried to reach does not exist."),
                ),
            ],
        ),
        Some(CallbackStatus::Blocked) => extra(
            "bounce",
            &[
                ("type", json!("blocked")),
                ("status", json!("5.7.1")),
                (
                    "reason",
                    reason("550 5.7.1 Message rejected by the receiving server."),
                ),
            ],
        ),
        Some(CallbackStatus::Dropped) => extra("dropped", &[("reason", reason("Bounced Address"))]),
        _ => extra(
            "delivered",
            &[
                ("response", json!("250 2.0.0 OK")),
                ("ip", json!("127.0.0.1")),
                ("tls", json!(1)),
            ],
        ),
    }
}

/// Queues `processed` then `delivered` (or the fault's bounce/block/drop) for one recipient.
pub(crate) fn schedule_email(state: &AppState, job: EmailCallback) {
    let Some(gateway) = gateway(state) else {
        return;
    };
    let url = format!("{gateway}/webhooks/sendgrid/events");
    let state2 = state.clone();
    spawn_until_stopping(state, async move {
        for event in [email_event(&job, "processed"), outcome_event(&job)] {
            let body = match serde_json::to_vec(&[Value::Object(event)]) {
                Ok(body) => body,
                Err(e) => {
                    tracing::warn!(error = %e, "could not encode a SendGrid event");
                    return;
                }
            };
            let timestamp = Utc::now().timestamp().to_string();
            let signature = state2.config().sendgrid_signer.sign(&timestamp, &body);
            let post = || {
                state2
                    .http
                    .post(&url)
                    .header(CONTENT_TYPE, "application/json")
                    .header(SENDGRID_SIGNATURE_HEADER, &signature)
                    .header(SENDGRID_TIMESTAMP_HEADER, &timestamp)
                    .body(body.clone())
            };
            if !deliver(&state2, post, "sendgrid event").await {
                return;
            }
        }
    });
}

/// The longest wait between two attempts of one callback.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Waits the configured delay, then POSTs with retries (100 ms doubling, at most
/// [`MAX_BACKOFF`] apart), logging a final failure (the next callback is still tried). Returns
/// `false` only when the server is shutting down.
async fn deliver(
    state: &AppState,
    request: impl Fn() -> reqwest::RequestBuilder,
    what: &str,
) -> bool {
    let config = state.config();
    if !config.callback_delay.is_zero() && !state.sleep_unless_stopping(config.callback_delay).await
    {
        return false;
    }
    let mut backoff = Duration::from_millis(100);
    for attempt in 0..=config.callback_retries {
        match request().send().await {
            Ok(response) if response.status().is_success() => return true,
            Ok(response) => {
                tracing::debug!(what, attempt, status = %response.status(), "callback refused")
            }
            Err(e) => tracing::debug!(what, attempt, error = %e, "callback failed"),
        }
        if attempt < config.callback_retries && !state.sleep_unless_stopping(backoff).await {
            return false;
        }
        backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
    }
    tracing::warn!(
        what,
        attempts = config.callback_retries + 1,
        "giving up on this callback"
    );
    true
}
