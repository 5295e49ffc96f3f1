//! The incidents page: the latest incidents (state, severity, affected clients, whether automation
//! is paused, time to first notice and to resolution) and one incident's whole story — events,
//! pauses, approvals, notices with their message counts per channel and state, skipped contacts by
//! reason. It reads `comms_domain::incidents::ops::{list, show}`, what `commsctl incident list|show`
//! print, so internal notes (`summary_internal`) are never part of it.
//!
//! An owner key may record the decision that lifts an incident's client pauses: the same
//! `resume_automation` as `commsctl incident resume-automation`, with the key's name as who
//! decided (the incident's owner or a delegate they named).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use comms_domain::incidents::ops::{self as incidents, IncidentError};
use minijinja::context;
use serde::Deserialize;
use uuid::Uuid;

use super::session::{Operator, see_other};
use super::view;
use crate::state::GatewayState;
use comms_domain::api_keys::Role;

/// How many incidents the list shows, newest first.
const LISTED: i64 = 100;

#[derive(Debug, Deserialize)]
pub struct ResumeForm {
    #[serde(default)]
    csrf: String,
}

/// `GET /console/incidents`
pub async fn page(State(state): State<GatewayState>, operator: Operator) -> Response {
    match incidents::list(&state.inner().pool, LISTED).await {
        Ok(list) => view::page(
            StatusCode::OK,
            "Incidents",
            Some(&operator),
            "incidents.html",
            context! { incidents => list },
        ),
        Err(error) => {
            tracing::warn!(%error, "incidents could not be listed");
            view::unavailable(Some(&operator))
        }
    }
}

/// `GET /console/incidents/{id}`
pub async fn one(
    State(state): State<GatewayState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Response {
    render(&state, &operator, &id, StatusCode::OK, None).await
}

async fn render(
    state: &GatewayState,
    operator: &Operator,
    id: &str,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return not_found(operator);
    };
    match incidents::show(&state.inner().pool, id).await {
        Ok(shown) => {
            let title = format!("Incident: {}", shown.incident.title);
            view::page(
                status,
                &title,
                Some(operator),
                "incident.html",
                context! { shown, problem, owner => operator.is_owner() },
            )
        }
        Err(IncidentError::NotFound(_)) => not_found(operator),
        Err(error) => {
            tracing::warn!(%error, incident.id = %id, "incident could not be read");
            view::unavailable(Some(operator))
        }
    }
}

fn not_found(operator: &Operator) -> Response {
    view::error(
        StatusCode::NOT_FOUND,
        Some(operator),
        "No such incident. Pick one from the incidents list.",
    )
}

/// `POST /console/incidents/{id}/resume-automation` (owner keys)
pub async fn resume_automation(
    State(state): State<GatewayState>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<ResumeForm>,
) -> Response {
    let path = format!("/console/incidents/{id}/resume-automation");
    if let Err(refused) = operator
        .act(&state, &path, &form.csrf, Some(Role::Owner))
        .await
    {
        return refused;
    }
    let Ok(incident) = id.parse::<Uuid>() else {
        return not_found(&operator);
    };
    let by = operator.caller.name.clone();
    match incidents::resume_automation(&state.inner().pool, incident, &by).await {
        Ok(resumed) => {
            tracing::info!(api.key_name = %by, incident.id = %incident, clients = resumed.clients.len(), "incident automation resumed from the console");
            see_other(&format!("/console/incidents/{incident}"))
        }
        Err(IncidentError::NotFound(_)) => not_found(&operator),
        Err(IncidentError::Db(error)) => {
            tracing::warn!(%error, incident.id = %incident, "automation could not be resumed");
            view::unavailable(Some(&operator))
        }
        Err(error) => {
            let status = match error {
                IncidentError::NotAllowed { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::CONFLICT,
            };
            let problem = format!("Nothing changed: {error}.");
            render(&state, &operator, &id, status, Some(&problem)).await
        }
    }
}
