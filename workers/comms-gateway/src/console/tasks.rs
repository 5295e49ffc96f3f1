//! The tasks page: open owner tasks by owner and age (one owner's with `?owner=`), and closing
//! one — through `comms_domain::tasks::close`, as `commsctl tasks done` does, so closing a reply
//! task records the response time. The key's name is recorded as who closed it.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use comms_domain::tasks::{self, TaskError};
use minijinja::context;
use serde::Deserialize;
use uuid::Uuid;

use super::session::{Operator, see_other};
use super::view;
use crate::state::GatewayState;

#[derive(Debug, Deserialize)]
pub struct TasksQuery {
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CloseForm {
    #[serde(default)]
    csrf: String,
}

/// `GET /console/tasks[?owner=NAME]`
pub async fn page(
    State(state): State<GatewayState>,
    operator: Operator,
    Query(query): Query<TasksQuery>,
) -> Response {
    render(&state, &operator, query.owner, StatusCode::OK, None).await
}

async fn render(
    state: &GatewayState,
    operator: &Operator,
    owner: Option<String>,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let owner = owner.filter(|o| !o.trim().is_empty());
    match tasks::open(&state.inner().pool, owner.as_deref()).await {
        Ok(open) => view::page(
            status,
            "Tasks",
            Some(operator),
            "tasks.html",
            context! { tasks => open, owner, problem, now => chrono::Utc::now() },
        ),
        Err(error) => {
            tracing::warn!(%error, "tasks could not be listed");
            view::unavailable(Some(operator))
        }
    }
}

/// `POST /console/tasks/{id}/close`
pub async fn close(
    State(state): State<GatewayState>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<CloseForm>,
) -> Response {
    let path = format!("/console/tasks/{id}/close");
    if let Err(refused) = operator.act(&state, &path, &form.csrf, None).await {
        return refused;
    }
    let Ok(id) = id.parse::<Uuid>() else {
        return view::error(
            StatusCode::NOT_FOUND,
            Some(&operator),
            "No such task: a task id is a UUID.",
        );
    };
    match tasks::close(&state.inner().pool, id, &operator.caller.name).await {
        Ok(closed) => {
            tracing::info!(api.key_name = %operator.caller.name, task.id = %closed.task, "task closed from the console");
            see_other("/console/tasks")
        }
        Err(TaskError::Db(error)) => {
            tracing::warn!(%error, "task could not be closed");
            view::unavailable(Some(&operator))
        }
        Err(error) => {
            let problem = format!("Nothing changed: {error}.");
            render(
                &state,
                &operator,
                None,
                StatusCode::CONFLICT,
                Some(&problem),
            )
            .await
        }
    }
}
