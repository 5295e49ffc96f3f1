//! The dead-letter page: how many dead letters wait in `comms.dead`, the dead letters themselves
//! (`internal.rejected_input`, after collecting `comms.dead` into it) with their queue and reason,
//! masked like every dead-letter listing (`comms_domain::dead::mask`), and the replay and purge
//! forms. Payloads are not shown: they can hold personal data.
//!
//! Replay and purge call `comms_domain::dead::replay` and `purge`, the code behind
//! `commsctl dead replay|purge` and `POST /v1/dead/replay|purge`: a reason is required, the action
//! is audited in `internal.dead_letter_actions` with the key's name, and a replay goes through the
//! normal path (pause, rate limits and idempotency apply). "Preview" is the dry run.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use comms_domain::dead::{self, ActionReport, ActionRequest, DeadError, Filter};
use minijinja::context;
use serde::Deserialize;

use super::session::Operator;
use super::view;
use crate::state::GatewayState;

/// The most dead letters the page lists.
const LIMIT: i64 = 50;

/// Which dead letters a replay or purge means, and why.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    reason_contains: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    dry_run: Option<String>,
    #[serde(default)]
    csrf: String,
}

fn given(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// `GET /console/dead`
pub async fn page(State(state): State<GatewayState>, operator: Operator) -> Response {
    render(
        &state,
        &operator,
        StatusCode::OK,
        None,
        None,
        &ActionForm::default(),
    )
    .await
}

/// `POST /console/dead/replay`
pub async fn replay(
    State(state): State<GatewayState>,
    operator: Operator,
    Form(form): Form<ActionForm>,
) -> Response {
    act(&state, &operator, "replay", form).await
}

/// `POST /console/dead/purge`
pub async fn purge(
    State(state): State<GatewayState>,
    operator: Operator,
    Form(form): Form<ActionForm>,
) -> Response {
    act(&state, &operator, "purge", form).await
}

async fn act(
    state: &GatewayState,
    operator: &Operator,
    action: &str,
    form: ActionForm,
) -> Response {
    let path = format!("/console/dead/{action}");
    if let Err(refused) = operator.act(state, &path, &form.csrf, None).await {
        return refused;
    }
    let texts = [
        ("queue", Some(form.queue.as_str())),
        ("reason contains", Some(form.reason_contains.as_str())),
        ("why", Some(form.reason.as_str())),
    ];
    if let Err(problem) = crate::dead_api::storable(&texts) {
        let problem = format!("Nothing changed: {problem}.");
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return render(state, operator, status, Some(&problem), None, &form).await;
    }
    let id = match given(&form.id).map(|id| id.parse::<i64>()) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            let problem = "Nothing changed: a dead letter's id is a number.";
            return render(
                state,
                operator,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(problem),
                None,
                &form,
            )
            .await;
        }
    };
    let filter = Filter {
        queue: given(&form.queue),
        reason: given(&form.reason_contains),
        since: None,
        id,
        all_states: false,
    };
    let request = ActionRequest {
        actor: operator.caller.name.clone(),
        reason: form.reason.trim().to_string(),
        dry_run: form.dry_run.is_some(),
        rate: None,
    };
    crate::dead_api::collect(state).await;
    let inner = state.inner();
    let done = if action == "replay" {
        let publisher = match inner.broker.current().await {
            Ok(publisher) => publisher,
            Err(error) => {
                tracing::warn!(%error, "a console replay cannot reach the broker");
                let problem =
                    "Nothing changed: the broker cannot be reached; try again in a moment.";
                let status = StatusCode::SERVICE_UNAVAILABLE;
                return render(state, operator, status, Some(problem), None, &form).await;
            }
        };
        dead::replay(&inner.pool, &publisher, &inner.topology, &filter, &request).await
    } else {
        dead::purge(&inner.pool, &inner.topology, &filter, &request).await
    };
    match done {
        Ok(report) => {
            tracing::info!(api.key_name = %operator.caller.name, dead.action = ?report.action_id, dead.done = report.done, dead.dry_run = report.dry_run, "dead letters {action} from the console");
            let status = StatusCode::OK;
            render(
                state,
                operator,
                status,
                None,
                Some(&report),
                &ActionForm::default(),
            )
            .await
        }
        Err(DeadError::Db(error)) => {
            tracing::warn!(%error, "dead letters could not be changed");
            view::unavailable(Some(operator))
        }
        Err(error) => {
            let status = match error {
                DeadError::Busy => StatusCode::CONFLICT,
                DeadError::Broker(_) | DeadError::Publish(..) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let problem = format!("Nothing changed: {error}.");
            render(state, operator, status, Some(&problem), None, &form).await
        }
    }
}

async fn render(
    state: &GatewayState,
    operator: &Operator,
    status: StatusCode,
    problem: Option<&str>,
    report: Option<&ActionReport>,
    form: &ActionForm,
) -> Response {
    crate::dead_api::collect(state).await;
    let inner = state.inner();
    let dead_queue = inner.topology.dead_queue();
    let depth = inner
        .broker
        .queue_depths(std::slice::from_ref(&dead_queue))
        .await
        .first()
        .and_then(|q| q.messages);
    let letters = dead::list(
        &inner.pool,
        inner.topology.namespace(),
        &Filter::default(),
        LIMIT,
    )
    .await;
    match letters {
        Ok(letters) => view::page(
            status,
            "Dead letters",
            Some(operator),
            "dead.html",
            context! {
                dead_queue, depth, letters, limit => LIMIT, problem, report,
                form => context! {
                    id => form.id, queue => form.queue,
                    reason_contains => form.reason_contains, reason => form.reason,
                },
            },
        ),
        Err(error) => {
            tracing::warn!(%error, "dead letters could not be listed");
            view::unavailable(Some(operator))
        }
    }
}
