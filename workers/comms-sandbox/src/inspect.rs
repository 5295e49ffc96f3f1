//! The sandbox's own endpoints under `/sandbox/`: what tests read back (accepted messages, the
//! callback verification key) and the health probe local runs wait on.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::{AppState, RecordedMessage};

#[derive(Deserialize)]
pub(crate) struct MessagesQuery {
    to: Option<String>,
}

/// `GET /sandbox/messages[?to=…]`: accepted messages in acceptance order.
pub(crate) async fn list_messages(
    State(state): State<AppState>,
    Query(query): Query<MessagesQuery>,
) -> Json<Vec<RecordedMessage>> {
    let messages = state.messages();
    let selected = messages
        .iter()
        .filter(|m| {
            query
                .to
                .as_deref()
                .is_none_or(|to| same_recipient(&m.to, to))
        })
        .cloned()
        .collect();
    Json(selected)
}

/// Case-insensitive, and lenient about the leading `+` of a phone number, which an unencoded
/// query string turns into a space.
fn same_recipient(recorded: &str, wanted: &str) -> bool {
    let norm = |s: &str| s.trim().trim_start_matches('+').to_ascii_lowercase();
    norm(recorded) == norm(wanted)
}

/// `DELETE /sandbox/messages`
pub(crate) async fn clear_messages(State(state): State<AppState>) -> StatusCode {
    state.messages().clear();
    StatusCode::NO_CONTENT
}

/// `GET /sandbox/healthz`
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /sandbox/signing-key`: what a gateway needs to verify the sandbox's callbacks.
pub(crate) async fn signing_key(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "sendgrid_public_key": state.settings.sendgrid_public_key,
        "callbacks_enabled": state.config().gateway_url.is_some(),
    }))
}
