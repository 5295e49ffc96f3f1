//! The admin API over webhooks out: `POST /v1/webhooks` registers an app's endpoint (the secret is
//! in the answer, once) and `GET /v1/webhooks` lists them without secrets, for `oncall` and
//! `owner` keys. The same checks as `commsctl webhooks add` (comms_domain::webhooks), including the
//! refusal of internal addresses. See docs/upstream.md.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use comms_domain::webhooks::{NewWebhook, WebhookError, register};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Authorized, Oncall};
use crate::reply;
use crate::state::GatewayState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// The app whose events it receives; `null` for every app.
    app: Option<String>,
    url: String,
    events: Vec<String>,
    /// Who is told when it keeps failing; the key's name when absent.
    #[serde(default)]
    owner: Option<String>,
}

/// `POST /v1/webhooks`
pub async fn add(
    State(state): State<GatewayState>,
    auth: Authorized<Oncall>,
    body: Result<Json<WebhookBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return reply::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                &format!(
                    "expected {{app, url, events, owner}}: {}",
                    rejection.body_text()
                ),
            );
        }
    };
    let inner = state.inner();
    let new = NewWebhook {
        app: body.app,
        url: body.url,
        events: body.events,
        owner: body
            .owner
            .filter(|o| !o.trim().is_empty())
            .unwrap_or_else(|| auth.caller.name.clone()),
    };
    match register(
        &inner.pool,
        &new,
        inner.settings.events.webhook_allow_private,
    )
    .await
    {
        Ok(registered) => {
            tracing::info!(api.key_name = %auth.caller.name, webhook.id = %registered.id, "webhook registered");
            (
                StatusCode::CREATED,
                Json(json!({ "id": registered.id, "secret": registered.secret })),
            )
                .into_response()
        }
        Err(WebhookError::Database(error)) => {
            tracing::warn!(%error, "webhook registration failed");
            reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "try again",
            )
        }
        Err(refused) => reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_webhook",
            &refused.to_string(),
        ),
    }
}

/// `GET /v1/webhooks`
pub async fn list(State(state): State<GatewayState>, _auth: Authorized<Oncall>) -> Response {
    match comms_domain::webhooks::list(&state.inner().pool).await {
        Ok(all) => (StatusCode::OK, Json(json!({ "webhooks": all }))).into_response(),
        Err(error) => {
            tracing::warn!(%error, "webhook list failed");
            reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "try again",
            )
        }
    }
}
