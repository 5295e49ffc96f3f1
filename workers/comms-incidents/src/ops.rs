//! What operators do with incidents, shared by `commsctl incident` and the gateway's admin API so
//! both follow the same rules: publish an event, lift an incident's pauses by a recorded
//! decision, and read an incident's timeline.

use chrono::{DateTime, Utc};
use comms_shared::amqp::{Outgoing, PublishError, Publisher};
use comms_shared::pause::Scope;
use comms_shared::pause::store::{self as pause_store, PauseError};
use comms_shared::topology::Topology;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::event::{EventType, IncidentEvent};
use crate::store;

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
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Publishes `event` to `comms.incident` (confirmed), as incident tooling would.
pub async fn publish_event(
    publisher: &Publisher,
    topology: &Topology,
    kind: EventType,
    event: &IncidentEvent,
) -> Result<(), PublishError> {
    let body = serde_json::to_vec(event).unwrap_or_default();
    let exchange = topology.incident_exchange();
    publisher
        .publish(Outgoing {
            exchange: &exchange,
            routing_key: kind.routing_key(),
            body: &body,
            message_id: Some(format!("{}:{}", event.incident_id, event.sequence)),
            ..Outgoing::default()
        })
        .await
}

/// The next sequence for an update of `incident` (1 for a new one).
pub async fn next_sequence(pool: &PgPool, incident: Uuid) -> Result<i64, sqlx::Error> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT sequence FROM comms.incidents WHERE id = $1")
            .bind(incident)
            .fetch_optional(pool)
            .await?;
    Ok(current.unwrap_or(0) + 1)
}

/// An accepted event as stored.
type EventRow = (
    i64,
    String,
    String,
    bool,
    String,
    String,
    DateTime<Utc>,
    serde_json::Value,
    Option<serde_json::Value>,
);

/// The latest accepted event of `incident`, to build an update from.
pub async fn latest_event(pool: &PgPool, incident: Uuid) -> Result<IncidentEvent, IncidentError> {
    let row: Option<EventRow> =
        sqlx::query_as(
            "SELECT sequence, title, severity, facts_verified, owner, source, occurred_at, affected, template
             FROM comms.incident_events WHERE incident_id = $1 ORDER BY sequence DESC LIMIT 1",
        )
        .bind(incident)
        .fetch_optional(pool)
        .await?;
    let (sequence, title, severity, facts_verified, owner, source, occurred_at, affected, template) =
        row.ok_or(IncidentError::NotFound(incident))?;
    Ok(IncidentEvent {
        incident_id: incident,
        sequence,
        title,
        severity: serde_json::from_value(severity.into()).unwrap_or(crate::event::Severity::Minor),
        affected: serde_json::from_value(affected).unwrap_or_default(),
        facts_verified,
        owner,
        source,
        occurred_at,
        template: template.and_then(|t| serde_json::from_value(t).ok()),
        summary_internal: None,
    })
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
    if by.trim().is_empty() || !comms_shared::approvals::may_decide(pool, &owner, by).await? {
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
        match pause_store::resume(pool, &scope, &reason, by).await {
            Ok(_) | Err(PauseError::NotPaused(_)) => clients.push(client),
            Err(other) => return Err(other.into()),
        }
    }
    sqlx::query("UPDATE comms.incidents SET automation_paused = false WHERE id = $1")
        .bind(incident)
        .execute(pool)
        .await?;
    store::log(
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
