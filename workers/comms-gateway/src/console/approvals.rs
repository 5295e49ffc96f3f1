//! The approvals page, for owner keys: what waits for *me* (the key's name is the owner, or a
//! delegate an owner named), with the rendered content, the recipient masked, the record and the
//! age; approve, reject with a reason, or mark an AI draft reviewed.
//!
//! Decisions are `comms_domain::approvals::decide`, the rules `commsctl approve` and the admin API
//! apply, with the key's name as the person deciding; an approved message is handed back to
//! `comms.send` exactly as the admin API does it.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use comms_domain::approvals::{self, ApprovalError, Decision};
use minijinja::context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::session::{Operator, see_other};
use super::view;
use crate::state::GatewayState;
use comms_domain::api_keys::Role;

#[derive(Debug, Serialize)]
struct Card {
    id: Uuid,
    idempotency_key: String,
    owner: String,
    kind: String,
    channel: String,
    waits_for: &'static str,
    subject: Option<String>,
    body: String,
    recipient: String,
    record: String,
    contains_roi: bool,
    ai_draft: bool,
    age_seconds: f64,
}

#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    csrf: String,
}

/// `GET /console/approvals`
pub async fn page(State(state): State<GatewayState>, operator: Operator) -> Response {
    if let Err(refused) = operator.owner_page(&state, "/console/approvals").await {
        return refused;
    }
    render(&state, &operator, StatusCode::OK, None).await
}

async fn render(
    state: &GatewayState,
    operator: &Operator,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    match cards(state, &operator.caller.name).await {
        Ok(waiting) => view::page(
            status,
            "Approvals",
            Some(operator),
            "approvals.html",
            context! { waiting, problem, me => operator.caller.name.clone() },
        ),
        Err(error) => {
            tracing::warn!(%error, "approvals could not be listed");
            view::unavailable(Some(operator))
        }
    }
}

async fn cards(state: &GatewayState, me: &str) -> Result<Vec<Card>, sqlx::Error> {
    let pool = &state.inner().pool;
    let waiting = approvals::waiting(pool, Some(me)).await?;
    let ids: Vec<Uuid> = waiting.iter().map(|w| w.id).collect();
    let details: Vec<(Uuid, Option<String>, String, String, Uuid)> = sqlx::query_as(
        "SELECT id, body, recipient_address, record_type, record_id FROM comms.messages
         WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(waiting
        .into_iter()
        .filter_map(|w| {
            let (_, body, recipient, record_type, record_id) =
                details.iter().find(|d| d.0 == w.id)?;
            Some(Card {
                id: w.id,
                idempotency_key: w.idempotency_key,
                owner: w.owner,
                kind: w.kind,
                channel: w.channel,
                waits_for: w.waits_for.as_str(),
                subject: w.subject,
                body: body.clone().unwrap_or_default(),
                recipient: view::mask_recipient(recipient),
                record: format!("{record_type} {record_id}"),
                contains_roi: w.contains_roi,
                ai_draft: w.ai_draft,
                age_seconds: w.age_seconds,
            })
        })
        .collect())
}

/// `POST /console/approvals/{id}/{approve|reject|review}`
pub async fn decide(
    State(state): State<GatewayState>,
    operator: Operator,
    Path((id, decision)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let path = format!("/console/approvals/{id}/{decision}");
    if let Err(refused) = operator
        .act(&state, &path, &form.csrf, Some(Role::Owner))
        .await
    {
        return refused;
    }
    let decision = match decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject {
            reason: form.reason.trim().to_string(),
        },
        "review" => Decision::ReviewSafe,
        other => {
            let problem = format!("`{other}` is not a decision (approve, reject or review).");
            return view::error(StatusCode::NOT_FOUND, Some(&operator), &problem);
        }
    };
    let pool = &state.inner().pool;
    let decided = match approvals::decide(pool, &id, decision, &operator.caller.name).await {
        Ok(decided) => decided,
        Err(error) => return refused(&state, &operator, &error).await,
    };
    tracing::info!(api.key_name = %operator.caller.name, message.id = %decided.message_id, approval.decision = decided.decision, "approval decision from the console");
    if decided.goes_on() {
        // A publish the broker did not confirm is repaired by the senders' housekeeping.
        crate::approvals::hand_back(&state, &decided).await;
    }
    see_other("/console/approvals")
}

async fn refused(state: &GatewayState, operator: &Operator, error: &ApprovalError) -> Response {
    let status = match error {
        ApprovalError::NotFound(_) => StatusCode::NOT_FOUND,
        ApprovalError::NotWaiting { .. } | ApprovalError::WrongGate { .. } => StatusCode::CONFLICT,
        ApprovalError::NotAllowed { .. } | ApprovalError::NotOwner { .. } => StatusCode::FORBIDDEN,
        ApprovalError::Missing(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ApprovalError::Db(db) if comms_runtime::db_error::is_transient(db) => {
            tracing::warn!(error = %db, "approval decision could not be recorded");
            return view::unavailable(Some(operator));
        }
        ApprovalError::Db(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let problem = match error {
        ApprovalError::Db(db) => comms_runtime::db_error::refused_reason(db),
        other => other.to_string(),
    };
    render(
        state,
        operator,
        status,
        Some(&format!("Nothing changed: {problem}")),
    )
    .await
}
