//! The on-call admin API over the pause switch: `GET /v1/pause` (what is on, with held counts),
//! `POST /v1/pause` and `POST /v1/resume`, for `oncall` (and `owner`) keys. It applies the same
//! rules as `commsctl pause`: a reason is required, no scope means global, and every change is
//! recorded with who made it — the person named in the body with the key's name, or the key's
//! name alone when the body names no one.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use comms_domain::contract::{Channel, Kind};
use comms_domain::pause::Scope;
use comms_domain::pause::store::{self, PauseError, PauseRequest};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Authorized, Oncall};
use crate::reply;
use crate::state::GatewayState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeBody {
    /// `global` (default), `channel`, `kind` or `client`.
    #[serde(default)]
    scope: Option<String>,
    /// The channel, kind or client id for a narrower scope.
    #[serde(default)]
    value: Option<String>,
    /// Why (required).
    #[serde(default)]
    reason: Option<String>,
    /// The person acting, recorded with the key's name; without it, the key's name is the actor.
    #[serde(default)]
    actor: Option<String>,
    /// Pause only: resume by itself after this long (`2h`, `30m`).
    #[serde(default, rename = "for")]
    duration: Option<String>,
}

fn invalid(message: &str) -> Response {
    reply::error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
}

fn scope_of(body: &ScopeBody) -> Result<Scope, String> {
    parse_scope(body.scope.as_deref(), body.value.as_deref())
}

/// A scope as the admin API and the console name it: `global` (also when absent), or `channel`,
/// `kind`, `client` or `sequence` with its value. The problem is phrased for the caller.
pub(crate) fn parse_scope(scope: Option<&str>, value: Option<&str>) -> Result<Scope, String> {
    let value = value.unwrap_or_default().trim().to_string();
    let scope = scope.unwrap_or("global");
    if scope != "global" && value.is_empty() {
        return Err(format!(
            "value: a {scope} scope needs a value (which {scope} to pause or resume)"
        ));
    }
    match scope {
        // A value without its scope is a mistake that must not widen to everything: resuming
        // `{"value": "sms"}` would otherwise lift a global pause.
        "global" if !value.is_empty() => Err(
            "value: the global scope takes no value; name the scope the value belongs to (scope: channel, kind, client or sequence)"
                .into(),
        ),
        "global" => Ok(Scope::Global),
        "channel" => value
            .parse::<Channel>()
            .map(|_| Scope::Channel(value.clone()))
            .map_err(|e| format!("value: {e}")),
        "kind" => value
            .parse::<Kind>()
            .map(|_| Scope::Kind(value.clone()))
            .map_err(|e| format!("value: {e}")),
        "client" => value
            .parse()
            .map(Scope::Client)
            .map_err(|_| "value: a client scope needs a client id (UUID)".to_string()),
        "sequence" if comms_domain::sequences::valid_name(&value) => Ok(Scope::Sequence(value)),
        "sequence" => {
            Err("value: a sequence scope needs a sequence name ([a-z0-9_.-]{1,100})".into())
        }
        other => Err(format!(
            "scope: `{other}` is not one of global, channel, kind, client, sequence"
        )),
    }
}

/// Who acted: the person the body names, with the key they used; without one, the key's name
/// (the operator's identity on this API, as `$USER` is for `commsctl`).
fn actor(body: &ScopeBody, key_name: &str) -> String {
    match body
        .actor
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        Some(person) => format!("{person} (key {key_name})"),
        None => key_name.to_string(),
    }
}

fn reason(body: &ScopeBody) -> Result<String, String> {
    body.reason
        .clone()
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| "reason: is required".to_string())
}

/// The body of a pause or resume call: its scope and its (mandatory) reason, or the problem.
fn read_body(
    body: Result<Json<ScopeBody>, JsonRejection>,
) -> Result<(ScopeBody, Scope, String), String> {
    let Json(body) = body.map_err(|rejection| rejection.body_text())?;
    let scope = scope_of(&body)?;
    let reason = reason(&body)?;
    Ok((body, scope, reason))
}

/// `GET /v1/pause`
pub async fn status(State(state): State<GatewayState>, _auth: Authorized<Oncall>) -> Response {
    let pool = &state.inner().pool;
    let active = match store::active(pool).await {
        Ok(active) => active,
        Err(_) => {
            return reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the pause switch could not be read",
            );
        }
    };
    let mut out = Vec::new();
    for pause in active {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM comms.messages WHERE delivery_state = 'held' AND held_by_pause = $1",
        )
        .bind(pause.id)
        .fetch_one(pool)
        .await
        .unwrap_or(0);
        out.push(json!({ "pause": pause, "held": held }));
    }
    Json(json!({ "paused": out })).into_response()
}

/// `POST /v1/pause`
pub async fn pause(
    State(state): State<GatewayState>,
    auth: Authorized<Oncall>,
    body: Result<Json<ScopeBody>, JsonRejection>,
) -> Response {
    let (body, scope, reason) = match read_body(body) {
        Ok(read) => read,
        Err(problem) => return invalid(&problem),
    };
    let expires_at = match body.duration.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) => chrono::Duration::from_std(d)
            .ok()
            .map(|d| chrono::Utc::now() + d),
        Some(Err(e)) => return invalid(&format!("for: {e}")),
    };
    let request = PauseRequest {
        scope,
        reason,
        actor: actor(&body, &auth.caller.name),
        expires_at,
        automatic: false,
    };
    match store::pause(&state.inner().pool, &request).await {
        Ok(pause) => {
            tracing::warn!(pause.scope = %pause.scope, api.key = %auth.caller.name, "paused through the admin API");
            (StatusCode::CREATED, Json(json!({ "pause": pause }))).into_response()
        }
        Err(e) => failure(e),
    }
}

/// `POST /v1/resume`
pub async fn resume(
    State(state): State<GatewayState>,
    auth: Authorized<Oncall>,
    body: Result<Json<ScopeBody>, JsonRejection>,
) -> Response {
    let (body, scope, reason) = match read_body(body) {
        Ok(read) => read,
        Err(problem) => return invalid(&problem),
    };
    match store::resume(
        &state.inner().pool,
        &scope,
        &reason,
        &actor(&body, &auth.caller.name),
    )
    .await
    {
        Ok(ended) => {
            tracing::warn!(pause.scope = %ended.scope, api.key = %auth.caller.name, "resumed through the admin API");
            Json(json!({ "resumed": ended })).into_response()
        }
        Err(e) => failure(e),
    }
}

fn failure(error: PauseError) -> Response {
    match error {
        PauseError::NotPaused(scope) => reply::error(
            StatusCode::NOT_FOUND,
            "not_paused",
            &format!("nothing is paused at scope {scope}"),
        ),
        PauseError::HeldByIncident { .. } => {
            reply::error(StatusCode::CONFLICT, "held_by_incident", &error.to_string())
        }
        PauseError::InvalidExpiry => invalid(&error.to_string()),
        PauseError::UnknownTarget(_) => reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_target",
            &error.to_string(),
        ),
        PauseError::NoReason | PauseError::NoActor => invalid(&error.to_string()),
        PauseError::Db(_) => reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the pause switch could not be changed",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_without_its_scope_never_widens_to_global() {
        for (scope, value) in [(None, Some("sms")), (Some("global"), Some("email"))] {
            let refused = parse_scope(scope, value).expect_err("a stray value");
            assert!(
                refused.starts_with("value: the global scope takes no value"),
                "{refused}"
            );
        }
        assert_eq!(parse_scope(None, None), Ok(Scope::Global));
        assert_eq!(parse_scope(Some("global"), Some("  ")), Ok(Scope::Global));
        assert_eq!(
            parse_scope(Some("channel"), Some("sms")),
            Ok(Scope::Channel("sms".into()))
        );
        let empty = parse_scope(Some("channel"), None).expect_err("no channel");
        assert!(
            empty.starts_with("value: a channel scope needs a value"),
            "{empty}"
        );
    }
}
