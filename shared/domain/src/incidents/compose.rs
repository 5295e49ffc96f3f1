//! Incident events written by operators (`commsctl incident declare|update|verify|resolve` and
//! the gateway's admin API): a declaration becomes the first event, an update is the incident's
//! latest accepted event with the operator's changes and the next sequence. Every event is
//! checked by the worker's own decoder before it is published, so an operator learns at once
//! what is wrong instead of finding a dead letter later.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::event::{self, Affected, EventError, EventType, IncidentEvent, Severity, TemplateRef};
use super::ops::IncidentError;
use comms_runtime::amqp::{Outgoing, PublishError, Publisher};
use comms_runtime::topology::Topology;

/// A new incident, as an operator declares it. The first event gets sequence 1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    /// A new id when absent.
    #[serde(default)]
    pub incident_id: Option<Uuid>,
    pub title: String,
    pub severity: Severity,
    pub affected: Affected,
    pub facts_verified: bool,
    pub owner: String,
    /// Now when absent.
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub template: Option<TemplateRef>,
    #[serde(default)]
    pub summary_internal: Option<String>,
}

/// The first event of a declared incident, sent by `source`.
pub fn declaration(declared: Declaration, source: &str) -> IncidentEvent {
    IncidentEvent {
        incident_id: declared.incident_id.unwrap_or_else(Uuid::new_v4),
        sequence: 1,
        title: declared.title,
        severity: declared.severity,
        affected: declared.affected,
        facts_verified: declared.facts_verified,
        owner: declared.owner,
        source: source.to_string(),
        occurred_at: declared.occurred_at.unwrap_or_else(Utc::now),
        template: declared.template,
        summary_internal: declared.summary_internal,
    }
}

/// What an update changes; everything absent stays as the latest event had it (except
/// `summary_internal`, which belongs to one event only).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Replaces the affected clients and projects (a client no longer named stays linked).
    #[serde(default)]
    pub affected: Option<Affected>,
    #[serde(default)]
    pub facts_verified: Option<bool>,
    #[serde(default)]
    pub template: Option<TemplateRef>,
    /// Merged into the latest template's vars when `template` is absent.
    #[serde(default)]
    pub vars: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub summary_internal: Option<String>,
    /// Now when absent (for `resolved`, the resolution time).
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
}

/// The next event of `incident`: its latest accepted event with `change` applied, the next
/// sequence, and `source`. `verify` sets `facts_verified`; a resolved incident takes no more.
pub async fn follow_up(
    pool: &PgPool,
    incident: Uuid,
    kind: EventType,
    change: Change,
    source: &str,
) -> Result<IncidentEvent, IncidentError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM comms.incidents WHERE id = $1")
            .bind(incident)
            .fetch_optional(pool)
            .await?;
    if state.as_deref() == Some("resolved") {
        return Err(IncidentError::Resolved(incident));
    }
    if kind == EventType::Resolved && change.template.is_some() {
        return Err(EventError::Invalid(
            "template: a resolution notice always uses the resolution template \
             (incidents.resolution_template); give only vars"
                .into(),
        )
        .into());
    }
    let mut next = latest_event(pool, incident).await?;
    next.sequence = next_sequence(pool, incident).await?;
    next.source = source.to_string();
    next.occurred_at = change.occurred_at.unwrap_or_else(Utc::now);
    next.summary_internal = change.summary_internal;
    if let Some(title) = change.title {
        next.title = title;
    }
    if let Some(severity) = change.severity {
        next.severity = severity;
    }
    if let Some(affected) = change.affected {
        next.affected = affected;
    }
    if let Some(verified) = change.facts_verified {
        next.facts_verified = verified;
    }
    if kind == EventType::FactsVerified {
        next.facts_verified = true;
    }
    match (change.template, change.vars, next.template.as_mut()) {
        (Some(template), _, _) => next.template = Some(template),
        (None, Some(vars), Some(template)) => template.vars.extend(vars),
        (None, Some(_), None) => {
            return Err(EventError::Invalid(
                "vars given but the incident has no template: name one".into(),
            )
            .into());
        }
        (None, None, _) => {}
    }
    Ok(next)
}

/// An event checked by the worker's decoder, ready to publish to `comms.incident`.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub kind: EventType,
    pub event: IncidentEvent,
    body: Vec<u8>,
}

impl Prepared {
    pub fn routing_key(&self) -> &'static str {
        self.kind.routing_key()
    }

    /// The confirmed publish of this event to `exchange` (the namespace's `comms.incident`).
    pub fn outgoing<'a>(&'a self, exchange: &'a str) -> Outgoing<'a> {
        Outgoing {
            exchange,
            routing_key: self.kind.routing_key(),
            body: &self.body,
            message_id: Some(format!(
                "{}:{}",
                self.event.incident_id, self.event.sequence
            )),
            content_type: Some("application/json"),
            ..Outgoing::default()
        }
    }
}

/// Serialises `event` and runs the worker's decoder on it: what it refuses is refused here.
pub fn prepare(kind: EventType, event: IncidentEvent) -> Result<Prepared, EventError> {
    let body = serde_json::to_vec(&event).map_err(|e| EventError::Invalid(e.to_string()))?;
    let (kind, event) = event::parse(kind.routing_key(), &body)?;
    Ok(Prepared { kind, event, body })
}

/// Publishes a prepared event to `comms.incident` and waits for the broker's confirm.
pub async fn publish_event(
    publisher: &Publisher,
    topology: &Topology,
    prepared: &Prepared,
) -> Result<(), PublishError> {
    let exchange = topology.incident_exchange();
    publisher.publish(prepared.outgoing(&exchange)).await
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
    let row: Option<EventRow> = sqlx::query_as(
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
        severity: serde_json::from_value(severity.into()).unwrap_or(Severity::Minor),
        affected: serde_json::from_value(affected).unwrap_or_default(),
        facts_verified,
        owner,
        source,
        occurred_at,
        template: template.and_then(|t| serde_json::from_value(t).ok()),
        summary_internal: None,
    })
}
