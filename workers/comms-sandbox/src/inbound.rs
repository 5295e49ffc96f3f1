//! `POST /sandbox/inbound`: a person texting back, simulated.
//!
//! A first run should show the whole loop, replies and STOP included, without a phone. So the
//! sandbox sends the gateway exactly what Twilio sends for an inbound SMS: a form POST to
//! `{gateway}/webhooks/twilio/inbound` with Twilio's parameters, signed with `X-Twilio-Signature`
//! under the configured auth token. Unlike delivery callbacks it is sent once and synchronously,
//! so the caller learns whether the gateway took it.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ids;
use crate::signing::{TWILIO_SIGNATURE_HEADER, twilio_signature};
use crate::state::{AppState, Provider};

/// The account inbound messages are addressed to (the documented `AC` + 32 hex form).
const INBOUND_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

/// What `POST /sandbox/inbound` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundSpec {
    /// Who texts (E.164), e.g. the recipient of an earlier message.
    pub from: String,
    /// What they text, e.g. `STOP`.
    pub body: String,
    /// The number texted (E.164); by default the `From` of the last SMS the sandbox accepted for
    /// `from`, i.e. the number the person is answering.
    #[serde(default)]
    pub to: Option<String>,
}

/// What the sandbox answers when the gateway accepted the inbound message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundSent {
    pub message_sid: String,
    pub from: String,
    pub to: String,
    /// The gateway's HTTP status.
    pub gateway_status: u16,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `POST /sandbox/inbound`: 200 with [`InboundSent`] once the gateway answered 2xx; 400 for a
/// bad request; 409 when no gateway is configured; 502 when the gateway refused or was not
/// reachable (with its status, if it answered).
pub(crate) async fn simulate(
    State(state): State<AppState>,
    spec: Result<Json<InboundSpec>, JsonRejection>,
) -> Response {
    let spec = match spec {
        Ok(Json(spec)) => spec,
        Err(rejection) => return refuse(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let Some(gateway) = state.config().gateway_url.clone() else {
        return refuse(
            StatusCode::CONFLICT,
            "no gateway is configured (--gateway-url), so there is nowhere to deliver an inbound message",
        );
    };
    if !crate::twilio::request::is_e164(&spec.from) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "from must be E.164, e.g. +14155552671",
        );
    }
    let to = match spec
        .to
        .clone()
        .or_else(|| answered_number(&state, &spec.from))
    {
        Some(to) if crate::twilio::request::is_e164(&to) => to,
        Some(_) => return refuse(StatusCode::BAD_REQUEST, "to must be E.164"),
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "no SMS was sent to this number yet: say which number is texted with \"to\"",
            );
        }
    };
    let sid = ids::twilio_sid("SM");
    let params: Vec<(&str, String)> = vec![
        ("SmsMessageSid", sid.clone()),
        ("NumMedia", "0".into()),
        ("SmsSid", sid.clone()),
        ("SmsStatus", "received".into()),
        ("Body", spec.body.clone()),
        ("To", to.clone()),
        ("NumSegments", "1".into()),
        ("MessageSid", sid.clone()),
        ("AccountSid", INBOUND_ACCOUNT_SID.into()),
        ("From", spec.from.clone()),
        ("ApiVersion", "2010-04-01".into()),
    ];
    let url = format!("{}/webhooks/twilio/inbound", gateway.trim_end_matches('/'));
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let signature = twilio_signature(&state.config().twilio_auth_token, &url, &pairs);
    let sent = state
        .http
        .post(&url)
        .header(TWILIO_SIGNATURE_HEADER, signature)
        .form(&params)
        .send()
        .await;
    match sent {
        Ok(answer) if answer.status().is_success() => {
            tracing::info!(sid = %sid, "inbound SMS delivered to the gateway");
            let sent = InboundSent {
                message_sid: sid,
                from: spec.from,
                to,
                gateway_status: answer.status().as_u16(),
            };
            (StatusCode::OK, Json(sent)).into_response()
        }
        Ok(answer) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({
                "error": "the gateway refused the inbound message",
                "gateway_status": answer.status().as_u16(),
            })),
        )
            .into_response(),
        Err(error) => refuse(
            StatusCode::BAD_GATEWAY,
            format!("the gateway is not reachable: {error}"),
        ),
    }
}

/// The number the last SMS accepted for `person` came from, if it was a phone number.
fn answered_number(state: &AppState, person: &str) -> Option<String> {
    state
        .messages()
        .iter()
        .rev()
        .find(|m| m.provider == Provider::Twilio && m.to == person)
        .map(|m| m.from.clone())
        .filter(|from| from.starts_with('+'))
}
