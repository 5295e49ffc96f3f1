//! The pause page: every scope that is on (since, by whom, why, until when, how many messages it
//! holds), a pause control per scope with a required reason and an optional expiry, a
//! confirmation step ([`super::confirm`]) that says what will stop and how much is in flight,
//! resume per scope, and after a resume the release progress of what the pause held.
//!
//! Changes go through `comms_domain::pause::store`, like `commsctl pause` and `POST /v1/pause`:
//! the same rules, the same history, the same `NOTIFY` that every sender applies at once. The
//! actor recorded is the key's name.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use comms_domain::pause::Scope;
use comms_domain::pause::store::{self, PauseError, PauseRequest};
use minijinja::context;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::session::{Operator, see_other};
use super::view;
use crate::pause_api::parse_scope;
use crate::state::GatewayState;

/// A scope that is on, as the home and pause pages show it.
#[derive(Debug, Serialize)]
pub struct ScopeState {
    id: Uuid,
    scope: String,
    scope_name: &'static str,
    scope_value: String,
    reason: String,
    actor: String,
    automatic: bool,
    started_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    held: i64,
    /// The oldest held messages (the pause page only).
    held_messages: Vec<HeldMessage>,
}

/// A message a pause holds, without its recipient or content.
#[derive(Debug, Serialize, sqlx::FromRow)]
struct HeldMessage {
    id: Uuid,
    idempotency_key: String,
    channel: String,
    kind: String,
    created_at: DateTime<Utc>,
}

/// How many held messages the pause page lists per scope.
const HELD_SHOWN: i64 = 20;

/// A pause that ended in the last hour, with how much of what it held is out again.
#[derive(Debug, Serialize, sqlx::FromRow)]
struct Ended {
    scope: String,
    scope_value: String,
    action: String,
    actor: String,
    occurred_at: DateTime<Utc>,
    still_held: i64,
    released: i64,
}

#[derive(Debug, Deserialize)]
pub struct ScopeForm {
    #[serde(default)]
    pub(super) scope: Option<String>,
    #[serde(default)]
    pub(super) value: Option<String>,
    #[serde(default)]
    pub(super) reason: String,
    /// Pause only: resume by itself after this long (`2h`, `30m`); empty for no expiry.
    #[serde(default, rename = "for")]
    pub(super) duration: String,
    #[serde(default)]
    pub(super) csrf: String,
}

/// Every scope on now, with its held count.
pub async fn scopes_on(pool: &PgPool) -> Result<Vec<ScopeState>, sqlx::Error> {
    let mut out = Vec::new();
    for pause in store::active(pool).await? {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM comms.messages WHERE held_by_pause = $1 AND delivery_state = 'held'",
        )
        .bind(pause.id)
        .fetch_one(pool)
        .await?;
        out.push(ScopeState {
            id: pause.id,
            scope: pause.scope.to_string(),
            scope_name: pause.scope.name(),
            scope_value: pause.scope.value(),
            reason: pause.reason,
            actor: pause.actor,
            automatic: pause.automatic,
            started_at: pause.started_at,
            expires_at: pause.expires_at,
            held,
            held_messages: Vec::new(),
        });
    }
    Ok(out)
}

/// [`scopes_on`], each with the oldest messages it holds, in the order they will be released.
async fn scopes_on_with_held(pool: &PgPool) -> Result<Vec<ScopeState>, sqlx::Error> {
    let mut on = scopes_on(pool).await?;
    for scope in &mut on {
        scope.held_messages = sqlx::query_as(
            "SELECT id, idempotency_key, channel, kind, created_at FROM comms.messages
             WHERE held_by_pause = $1 AND delivery_state = 'held' ORDER BY created_at, id LIMIT $2",
        )
        .bind(scope.id)
        .bind(HELD_SHOWN)
        .fetch_all(pool)
        .await?;
    }
    Ok(on)
}

async fn ended_lately(pool: &PgPool) -> Result<Vec<Ended>, sqlx::Error> {
    sqlx::query_as(
        "SELECT e.scope, e.scope_value, e.action, e.actor, e.occurred_at,
                (SELECT count(*) FROM comms.messages m
                 WHERE m.held_by_pause = e.pause_id AND m.delivery_state = 'held') AS still_held,
                (SELECT count(*) FROM comms.messages m
                 WHERE m.held_by_pause = e.pause_id AND m.delivery_state <> 'held') AS released
         FROM comms.pause_events e
         WHERE e.action IN ('resume', 'expire') AND e.occurred_at > now() - interval '1 hour'
         ORDER BY e.occurred_at DESC LIMIT 20",
    )
    .fetch_all(pool)
    .await
}

/// `GET /console/pause`
pub async fn page(State(state): State<GatewayState>, operator: Operator) -> Response {
    render(&state, &operator, StatusCode::OK, None).await
}

pub(super) async fn render(
    state: &GatewayState,
    operator: &Operator,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let pool = &state.inner().pool;
    match tokio::try_join!(scopes_on_with_held(pool), ended_lately(pool)) {
        Ok((on, ended)) => view::page(
            status,
            "Pause switch",
            Some(operator),
            "pause.html",
            context! { on, ended, problem },
        ),
        Err(error) => {
            tracing::warn!(%error, "pause page could not be read");
            view::unavailable(Some(operator))
        }
    }
}

pub(super) fn checked(form: &ScopeForm) -> Result<(Scope, Option<DateTime<Utc>>), String> {
    let scope = parse_scope(form.scope.as_deref(), form.value.as_deref())?;
    if form.reason.trim().is_empty() {
        return Err("A reason is required.".into());
    }
    let duration = form.duration.trim();
    let expires_at = if duration.is_empty() {
        None
    } else {
        let parsed = humantime::parse_duration(duration)
            .map_err(|e| format!("Expiry `{duration}`: {e} (write it like 30m or 2h)."))?;
        chrono::Duration::from_std(parsed)
            .ok()
            .map(|d| Utc::now() + d)
    };
    Ok((scope, expires_at))
}

/// `POST /console/pause`
pub async fn pause(
    State(state): State<GatewayState>,
    operator: Operator,
    Form(form): Form<ScopeForm>,
) -> Response {
    if let Err(refused) = operator
        .act(&state, "/console/pause", &form.csrf, None)
        .await
    {
        return refused;
    }
    let (scope, expires_at) = match checked(&form) {
        Ok(checked) => checked,
        Err(problem) => {
            return render(
                &state,
                &operator,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&problem),
            )
            .await;
        }
    };
    let request = PauseRequest {
        scope,
        reason: form.reason.trim().to_string(),
        actor: operator.caller.name.clone(),
        expires_at,
        automatic: false,
    };
    match store::pause(&state.inner().pool, &request).await {
        Ok(pause) => {
            tracing::warn!(pause.scope = %pause.scope, api.key_name = %operator.caller.name, "paused from the console");
            see_other("/console/pause")
        }
        Err(error) => failure(&state, &operator, error).await,
    }
}

/// `POST /console/resume`
pub async fn resume(
    State(state): State<GatewayState>,
    operator: Operator,
    Form(form): Form<ScopeForm>,
) -> Response {
    if let Err(refused) = operator
        .act(&state, "/console/resume", &form.csrf, None)
        .await
    {
        return refused;
    }
    let scope = match parse_scope(form.scope.as_deref(), form.value.as_deref()) {
        Ok(scope) => scope,
        Err(problem) => {
            return render(
                &state,
                &operator,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&problem),
            )
            .await;
        }
    };
    let pool = &state.inner().pool;
    match store::resume(pool, &scope, &form.reason, &operator.caller.name).await {
        Ok(ended) => {
            tracing::warn!(pause.scope = %ended.scope, api.key_name = %operator.caller.name, "resumed from the console");
            see_other("/console/pause")
        }
        Err(error) => failure(&state, &operator, error).await,
    }
}

async fn failure(state: &GatewayState, operator: &Operator, error: PauseError) -> Response {
    let status = match &error {
        PauseError::NotPaused(_) => StatusCode::NOT_FOUND,
        PauseError::HeldByIncident { .. } => StatusCode::CONFLICT,
        PauseError::NoReason
        | PauseError::NoActor
        | PauseError::UnknownTarget(_)
        | PauseError::InvalidExpiry => StatusCode::UNPROCESSABLE_ENTITY,
        PauseError::Db(error) => {
            tracing::warn!(%error, "the pause switch could not be changed from the console");
            return view::unavailable(Some(operator));
        }
    };
    let problem = format!("Nothing changed: {error}.");
    render(state, operator, status, Some(&problem)).await
}
