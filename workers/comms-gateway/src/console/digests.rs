//! The digests page: report digests (state, client, period, why one is blocked), the clients whose
//! digests are held, and one digest with its content, approval and sends with their delivery
//! states — `comms_domain::digests::view`, what `commsctl digest list|show` print.
//!
//! An owner key may approve a digest waiting for approval and release a client's held digests:
//! `comms_domain::digests::decide`, with the key's name as who decided, then the `digest.report`
//! job that publishes (or builds again) is enqueued, as `commsctl digest approve|release` do.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use comms_domain::digests::decide::{self, DecideError};
use comms_domain::digests::{self, view as digest_view};
use comms_runtime::amqp::Outgoing;
use minijinja::context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::session::{Operator, see_other};
use super::view;
use crate::state::GatewayState;
use comms_domain::api_keys::Role;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
}

/// A client whose digests are held (an unverified revenue figure), until its owner releases them.
#[derive(Debug, Serialize, sqlx::FromRow)]
struct Hold {
    client_id: Uuid,
    client_name: String,
    reason: String,
    held_at: DateTime<Utc>,
}

/// `GET /console/digests[?state=STATE]`
pub async fn page(
    State(state): State<GatewayState>,
    operator: Operator,
    Query(query): Query<ListQuery>,
) -> Response {
    render_list(&state, &operator, query.state, StatusCode::OK, None).await
}

async fn render_list(
    state: &GatewayState,
    operator: &Operator,
    only: Option<String>,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let only = only.filter(|s| !s.trim().is_empty());
    let pool = &state.inner().pool;
    let listed = digest_view::list(pool, only.as_deref()).await;
    let held = holds(pool).await;
    match (listed, held) {
        (Ok(digests), Ok(holds)) => view::page(
            status,
            "Digests",
            Some(operator),
            "digests.html",
            context! { digests, holds, only, problem, owner => operator.is_owner() },
        ),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, "digests could not be listed");
            view::unavailable(Some(operator))
        }
    }
}

async fn holds(pool: &sqlx::PgPool) -> Result<Vec<Hold>, sqlx::Error> {
    sqlx::query_as(
        "SELECT h.client_id, c.name AS client_name, h.reason, h.held_at
         FROM comms.digest_holds h JOIN comms.clients c ON c.id = h.client_id
         WHERE h.released_at IS NULL ORDER BY h.held_at",
    )
    .fetch_all(pool)
    .await
}

/// `GET /console/digests/{id}` (a digest id, or a period id for its latest revision)
pub async fn one(
    State(state): State<GatewayState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Response {
    render_one(&state, &operator, &id, StatusCode::OK, None).await
}

async fn render_one(
    state: &GatewayState,
    operator: &Operator,
    id: &str,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let Ok(reference) = id.parse::<Uuid>() else {
        return not_found(operator);
    };
    match digest_view::find(&state.inner().pool, reference).await {
        Ok(Some(found)) => {
            let title = format!(
                "Digest: {} / {}",
                found.digest.client_name, found.digest.report_title
            );
            view::page(
                status,
                &title,
                Some(operator),
                "digest.html",
                context! { d => found.digest, sends => found.sends, views => found.views, problem, owner => operator.is_owner() },
            )
        }
        Ok(None) => not_found(operator),
        Err(error) => {
            tracing::warn!(%error, digest.reference = %reference, "digest could not be read");
            view::unavailable(Some(operator))
        }
    }
}

fn not_found(operator: &Operator) -> Response {
    view::error(
        StatusCode::NOT_FOUND,
        Some(operator),
        "No such digest. Pick one from the digests list.",
    )
}

/// `POST /console/digests/{id}/approve` (owner keys)
pub async fn approve(
    State(state): State<GatewayState>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Response {
    let path = format!("/console/digests/{id}/approve");
    if let Err(refused) = operator
        .act(&state, &path, &form.csrf, Some(Role::Owner))
        .await
    {
        return refused;
    }
    let Ok(digest) = id.parse::<Uuid>() else {
        return not_found(&operator);
    };
    let approval = match decide::approve(&state.inner().pool, digest, &operator.caller.name).await {
        Ok(approval) => approval,
        Err(DecideError::NotFound(_)) => return not_found(&operator),
        Err(error) => {
            let (status, problem) = refusal(&operator, &error);
            return render_one(&state, &operator, &id, status, problem.as_deref()).await;
        }
    };
    tracing::info!(api.key_name = %operator.caller.name, digest.id = %digest, "digest approved from the console");
    if enqueue_digest_jobs(
        &state,
        &[approval.period_id],
        &approval.approved_by,
        "console",
    )
    .await
    {
        see_other(&format!("/console/digests/{digest}"))
    } else {
        let problem = format!(
            "The approval is recorded, but the broker did not take the job that publishes it: \
             run `commsctl digest build --period {}`.",
            approval.period_id
        );
        render_one(
            &state,
            &operator,
            &id,
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&problem),
        )
        .await
    }
}

/// `POST /console/digests/clients/{client}/release` (owner keys)
pub async fn release(
    State(state): State<GatewayState>,
    operator: Operator,
    Path(client): Path<String>,
    Form(form): Form<DecideForm>,
) -> Response {
    let path = format!("/console/digests/clients/{client}/release");
    if let Err(refused) = operator
        .act(&state, &path, &form.csrf, Some(Role::Owner))
        .await
    {
        return refused;
    }
    let Ok(client_id) = client.parse::<Uuid>() else {
        return view::error(
            StatusCode::NOT_FOUND,
            Some(&operator),
            "No such client: a client id is a UUID.",
        );
    };
    let who = operator.caller.name.clone();
    let periods = match decide::release(&state.inner().pool, client_id, &who).await {
        Ok(periods) => periods,
        Err(error) => {
            let (status, problem) = refusal(&operator, &error);
            return render_list(&state, &operator, None, status, problem.as_deref()).await;
        }
    };
    tracing::info!(api.key_name = %who, client.id = %client_id, periods = periods.len(), "held digests released from the console");
    if enqueue_digest_jobs(&state, &periods, &who, "console").await {
        see_other("/console/digests")
    } else {
        let problem = "The release is recorded, but the broker did not take the jobs that build \
                       the client's digests again: run `commsctl digest build --period <id>` for \
                       each closed period.";
        render_list(
            &state,
            &operator,
            None,
            StatusCode::SERVICE_UNAVAILABLE,
            Some(problem),
        )
        .await
    }
}

/// The status and message for a refused decision (`None` message: the database failed, 503).
fn refusal(operator: &Operator, error: &DecideError) -> (StatusCode, Option<String>) {
    let status = match error {
        DecideError::NotFound(_) | DecideError::NotHeld(_) => StatusCode::NOT_FOUND,
        DecideError::NotWaiting { .. } => StatusCode::CONFLICT,
        DecideError::NotAllowed { .. } | DecideError::NoActor => StatusCode::FORBIDDEN,
        DecideError::Db(db) => {
            tracing::warn!(error = %db, api.key_name = %operator.caller.name, "digest decision could not be recorded");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(
                    "The database cannot be reached right now; nothing was changed. Try again."
                        .to_string(),
                ),
            );
        }
    };
    (status, Some(format!("Nothing changed: {error}.")))
}

/// Publishes one `digest.report` job per period with `source` (`console` here, `admin-api` from
/// the admin API); whether the broker took all.
pub(crate) async fn enqueue_digest_jobs(
    state: &GatewayState,
    periods: &[Uuid],
    owner: &str,
    source: &str,
) -> bool {
    let inner = state.inner();
    let exchange = inner.topology.digest_exchange();
    for period in periods {
        let body = digests::report_job(*period, owner, source, Utc::now());
        let published = inner
            .broker
            .publish(Outgoing {
                exchange: &exchange,
                routing_key: digests::REPORT_JOB,
                body: &body,
                ..Outgoing::default()
            })
            .await;
        if let Err(error) = published {
            tracing::warn!(%error, report.period = %period, "digest job not confirmed by the broker");
            return false;
        }
    }
    true
}
