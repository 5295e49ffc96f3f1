//! What operators do with incidents, shared by `commsctl incident` and the gateway's admin API so
//! both follow the same rules: publish an event, lift an incident's pauses by a recorded
//! decision, and read an incident's timeline. Building and publishing events is [`compose`].

use crate::pause::Scope;
use crate::pause::store::{self as pause_store, PauseError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

pub use super::affected::check_affected;
pub use super::compose::{
    Change, Declaration, Prepared, declaration, follow_up, latest_event, next_sequence, prepare,
    publish_event,
};

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("no incident {0}")]
    NotFound(Uuid),
    #[error(
        "{actor} may not resume automation for incident {incident} owned by {owner}: only the owner or a delegate the owner named may"
    )]
    NotAllowed {
        incident: Uuid,
        actor: String,
        owner: String,
    },
    #[error(
        "the facts of incident {0} are not verified: publish an update with facts_verified true first"
    )]
    FactsNotVerified(Uuid),
    #[error("pause switch: {0}")]
    Pause(#[from] PauseError),
    #[error("incident {0} is resolved: it takes no more updates")]
    Resolved(Uuid),
    #[error("affected: unknown {0}; nothing was published")]
    UnknownAffected(String),
    #[error(
        "incident {0} is already declared; nothing was published: change it with `commsctl incident update {0}` (POST /v1/incidents/{0}/update)"
    )]
    AlreadyDeclared(Uuid),
    #[error(transparent)]
    Invalid(#[from] super::event::EventError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Refuses a declaration of an incident that exists: its next event is an update, and a
/// declaration (sequence 1) would change nothing.
pub async fn check_new(pool: &PgPool, incident: Uuid) -> Result<(), IncidentError> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM comms.incidents WHERE id = $1)")
            .bind(incident)
            .fetch_one(pool)
            .await?;
    if exists {
        return Err(IncidentError::AlreadyDeclared(incident));
    }
    Ok(())
}

/// Records one step of an incident's timeline (`comms.incident_log`).
pub async fn log<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    incident: Uuid,
    what: &str,
    actor: &str,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.incident_log (incident_id, what, actor, detail) VALUES ($1, $2, $3, $4)",
    )
    .bind(incident)
    .bind(what)
    .bind(actor)
    .bind(detail)
    .execute(executor)
    .await?;
    Ok(())
}

/// What a resume decision did.
#[derive(Debug, Clone, Serialize)]
pub struct Resumed {
    pub incident_id: Uuid,
    pub by: String,
    /// The clients whose pause (caused by this incident) was lifted.
    pub clients: Vec<Uuid>,
}

/// The recorded decision that lifts the client pauses `incident` caused. Only the incident's
/// owner (or a delegate the owner named) decides, and only once its facts are verified. Each
/// lift is a resume of the pause switch (audited in `comms.pause_events`); held messages are then
/// released once, in order, by the senders.
pub async fn resume_automation(
    pool: &PgPool,
    incident: Uuid,
    by: &str,
) -> Result<Resumed, IncidentError> {
    let found: Option<(String, bool)> =
        sqlx::query_as("SELECT owner, facts_verified FROM comms.incidents WHERE id = $1")
            .bind(incident)
            .fetch_optional(pool)
            .await?;
    let (owner, verified) = found.ok_or(IncidentError::NotFound(incident))?;
    if by.trim().is_empty() || !crate::approvals::may_decide(pool, &owner, by).await? {
        return Err(IncidentError::NotAllowed {
            incident,
            actor: by.to_string(),
            owner,
        });
    }
    if !verified {
        return Err(IncidentError::FactsNotVerified(incident));
    }
    let paused: Vec<String> = sqlx::query_scalar(
        "SELECT scope_value FROM comms.pauses WHERE scope = 'client' AND incident_id = $1 ORDER BY scope_value",
    )
    .bind(incident)
    .fetch_all(pool)
    .await?;
    let reason = format!("incident {incident}: facts verified, automation resumed by {by}");
    let mut clients = Vec::new();
    for value in paused {
        let Some(scope @ Scope::Client(client)) = Scope::from_parts("client", &value) else {
            continue;
        };
        match pause_store::resume_for_incident(pool, &scope, incident, &reason, by).await {
            Ok(_) | Err(PauseError::NotPaused(_)) => clients.push(client),
            Err(other) => return Err(other.into()),
        }
    }
    sqlx::query("UPDATE comms.incidents SET automation_paused = false WHERE id = $1")
        .bind(incident)
        .execute(pool)
        .await?;
    log(
        pool,
        incident,
        "automation_resumed",
        by,
        serde_json::json!({"clients": clients}),
    )
    .await?;
    Ok(Resumed {
        incident_id: incident,
        by: by.to_string(),
        clients,
    })
}

/// One incident in a list.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct IncidentSummary {
    pub id: Uuid,
    pub title: String,
    pub severity: String,
    pub state: String,
    pub owner: String,
    pub sequence: i64,
    pub facts_verified: bool,
    pub automation_paused: bool,
    pub clients: i64,
    pub started_at: DateTime<Utc>,
    pub first_notice_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
}

const SUMMARY: &str = "SELECT i.id, i.title, i.severity, i.state, i.owner, i.sequence, i.facts_verified,
        i.automation_paused, (SELECT count(*) FROM comms.incident_clients c WHERE c.incident_id = i.id) AS clients,
        i.started_at, i.first_notice_at, i.resolved_at
     FROM comms.incidents i";

/// The most recent incidents.
pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<IncidentSummary>, sqlx::Error> {
    sqlx::query_as(&format!("{SUMMARY} ORDER BY i.started_at DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(pool)
        .await
}

#[path = "show.rs"]
mod show;
pub use show::{Show, TimelineEntry, show};
