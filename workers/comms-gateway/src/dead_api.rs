//! The dead-letter admin API, the HTTP twin of `commsctl dead` (docs/gateway.md#dead-letters),
//! for `oncall` (and `owner`) keys: list, show, replay and purge, with the rules of
//! `comms_domain::dead` — masked previews, replay through the normal path, every replay and purge
//! audited with who acted (the person the body names, with the key's name) and why.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use comms_domain::dead::{self, ActionRequest, DeadError, Filter};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Authorized, Oncall};
use crate::reply;
use crate::state::GatewayState;

/// `GET /v1/dead` query: the filters of `commsctl dead list`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    queue: Option<String>,
    reason: Option<String>,
    since: Option<String>,
    id: Option<i64>,
    #[serde(default)]
    all: bool,
    limit: Option<i64>,
}

/// `POST /v1/dead/replay` and `/v1/dead/purge` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    queue: Option<String>,
    reason_contains: Option<String>,
    since: Option<String>,
    id: Option<i64>,
    #[serde(default)]
    dry_run: bool,
    /// Replay only: `50/s` or a number.
    rate: Option<serde_json::Value>,
    /// Why (required), kept with the audit record.
    reason: Option<String>,
    /// The person acting, recorded with the key's name.
    actor: Option<String>,
}

fn invalid(message: &str) -> Response {
    reply::error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
}

fn unavailable(error: &dyn std::fmt::Display) -> Response {
    tracing::warn!(%error, "dead letters could not be read or changed");
    reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the dead letters could not be read or changed; retry",
    )
}

fn refused(error: DeadError) -> Response {
    match error {
        DeadError::ReasonRequired | DeadError::BadRate => invalid(&error.to_string()),
        DeadError::Busy => reply::error(StatusCode::CONFLICT, "busy", &error.to_string()),
        DeadError::Broker(_) | DeadError::Publish(..) => {
            tracing::warn!(%error, "a dead-letter replay could not publish");
            reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "broker_unavailable",
                &error.to_string(),
            )
        }
        DeadError::Db(error) => unavailable(&error),
    }
}

/// Moves what waits in `comms.dead` into the table first; a broker that cannot be reached only
/// leaves the listing without the broker's newest dead letters (logged). The console's dead-letter
/// page collects the same way.
pub(crate) async fn collect(state: &GatewayState) {
    let inner = state.inner();
    match inner.broker.current().await {
        Ok(publisher) => {
            if let Err(error) =
                dead::collect(&inner.pool, &publisher, &inner.topology, dead::COLLECT_MAX).await
            {
                tracing::warn!(%error, "comms.dead could not be collected");
            }
        }
        Err(error) => tracing::warn!(%error, "comms.dead could not be read"),
    }
}

/// PostgreSQL cannot store or compare U+0000 (NUL): a filter or reason holding one is the
/// caller's error (422), not a database outage (503). Found by `make api-fuzz`.
pub(crate) fn storable(texts: &[(&str, Option<&str>)]) -> Result<(), String> {
    match texts
        .iter()
        .find(|(_, text)| text.is_some_and(|t| t.contains('\0')))
    {
        Some((name, _)) => Err(format!("{name}: U+0000 (NUL) is not allowed")),
        None => Ok(()),
    }
}

fn since(text: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
    text.map(dead::parse_since).transpose()
}

/// `GET /v1/dead`
pub async fn list(
    State(state): State<GatewayState>,
    _auth: Authorized<Oncall>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return invalid(&rejection.body_text()),
    };
    let texts = [
        ("queue", query.queue.as_deref()),
        ("reason", query.reason.as_deref()),
        ("since", query.since.as_deref()),
    ];
    if let Err(problem) = storable(&texts) {
        return invalid(&problem);
    }
    let filter = Filter {
        queue: query.queue,
        reason: query.reason,
        since: match since(query.since.as_deref()) {
            Ok(since) => since,
            Err(problem) => return invalid(&problem),
        },
        id: query.id,
        all_states: query.all,
    };
    collect(&state).await;
    let inner = state.inner();
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    match dead::list(&inner.pool, inner.topology.namespace(), &filter, limit).await {
        Ok(letters) => Json(json!({ "dead": letters })).into_response(),
        Err(error) => unavailable(&error),
    }
}

/// `GET /v1/dead/{id}`
pub async fn show(
    State(state): State<GatewayState>,
    _auth: Authorized<Oncall>,
    Path(id): Path<i64>,
) -> Response {
    match dead::show(&state.inner().pool, id).await {
        Ok(Some(detail)) => Json(detail).into_response(),
        Ok(None) => reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no dead letter {id}"),
        ),
        Err(error) => unavailable(&error),
    }
}

/// The filter and request of a replay or purge body, or the problem.
fn read(
    body: Result<Json<ActionBody>, JsonRejection>,
    key_name: &str,
) -> Result<(Filter, ActionRequest), String> {
    let Json(body) = body.map_err(|rejection| rejection.body_text())?;
    storable(&[
        ("queue", body.queue.as_deref()),
        ("reason_contains", body.reason_contains.as_deref()),
        ("since", body.since.as_deref()),
        ("reason", body.reason.as_deref()),
        ("actor", body.actor.as_deref()),
    ])?;
    let rate = match &body.rate {
        None => None,
        Some(serde_json::Value::Number(n)) => Some(
            n.as_f64()
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or("rate: must be a positive number of messages per second")?,
        ),
        Some(serde_json::Value::String(s)) => Some(dead::parse_rate(s)?),
        Some(_) => return Err("rate: `50/s` or a number".into()),
    };
    let actor = match body
        .actor
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        Some(person) => format!("{person} (key {key_name})"),
        None => key_name.to_string(),
    };
    let filter = Filter {
        queue: body.queue,
        reason: body.reason_contains,
        since: since(body.since.as_deref())?,
        id: body.id,
        all_states: false,
    };
    let request = ActionRequest {
        actor,
        reason: body.reason.unwrap_or_default(),
        dry_run: body.dry_run,
        rate,
    };
    Ok((filter, request))
}

/// `POST /v1/dead/replay`
pub async fn replay(
    State(state): State<GatewayState>,
    auth: Authorized<Oncall>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Response {
    let (filter, request) = match read(body, &auth.caller.name) {
        Ok(read) => read,
        Err(problem) => return invalid(&problem),
    };
    collect(&state).await;
    let inner = state.inner();
    let publisher = match inner.broker.current().await {
        Ok(publisher) => publisher,
        Err(error) => {
            tracing::warn!(%error, "a dead-letter replay cannot reach the broker");
            return reply::broker_unavailable();
        }
    };
    match dead::replay(&inner.pool, &publisher, &inner.topology, &filter, &request).await {
        Ok(report) => {
            tracing::info!(api.key_name = %auth.caller.name, dead.action = ?report.action_id, dead.done = report.done, dead.dry_run = report.dry_run, "dead letters replayed via the API");
            Json(report).into_response()
        }
        Err(error) => refused(error),
    }
}

/// `POST /v1/dead/purge`
pub async fn purge(
    State(state): State<GatewayState>,
    auth: Authorized<Oncall>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Response {
    let (filter, request) = match read(body, &auth.caller.name) {
        Ok(read) => read,
        Err(problem) => return invalid(&problem),
    };
    if request.rate.is_some() {
        return invalid("rate: only a replay takes a rate");
    }
    collect(&state).await;
    let inner = state.inner();
    match dead::purge(&inner.pool, &inner.topology, &filter, &request).await {
        Ok(report) => {
            tracing::info!(api.key_name = %auth.caller.name, dead.action = ?report.action_id, dead.done = report.done, dead.dry_run = report.dry_run, "dead letters purged via the API");
            Json(report).into_response()
        }
        Err(error) => refused(error),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_nul_in_a_filter_or_reason_is_refused_by_name() {
        assert_eq!(
            super::storable(&[("queue", Some("comms.send.sms")), ("reason", Some("a\0b"))]),
            Err("reason: U+0000 (NUL) is not allowed".to_string())
        );
        assert!(super::storable(&[("queue", None), ("reason", Some("fine"))]).is_ok());
    }
}
