//! The incident event contract (docs/incidents.md, docs/incident-event.schema.json): the JSON
//! incident tooling publishes to `comms.incident`, decoded strictly and checked, so a bad event
//! is rejected with a named reason instead of half-applied.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The routing keys of `comms.incident`, one per event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Declared,
    Updated,
    FactsVerified,
    Resolved,
}

impl EventType {
    /// Every type with its routing key.
    pub const ALL: [(Self, &'static str); 4] = [
        (Self::Declared, "incident.declared"),
        (Self::Updated, "incident.updated"),
        (Self::FactsVerified, "incident.facts_verified"),
        (Self::Resolved, "incident.resolved"),
    ];

    pub fn from_routing_key(key: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, k)| *k == key).map(|(t, _)| *t)
    }

    pub fn routing_key(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("incident.updated", |(_, k)| k)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Declared => "declared",
            Self::Updated => "updated",
            Self::FactsVerified => "facts_verified",
            Self::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minor => "minor",
            Self::Major => "major",
            Self::Critical => "critical",
        }
    }
}

/// Who is affected: client ids and/or project ids (a project stands for its client).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Affected {
    #[serde(default)]
    pub clients: Vec<Uuid>,
    #[serde(default)]
    pub projects: Vec<Uuid>,
}

/// The incident template a notice is rendered from (`<name>.sms`, `<name>.email`,
/// `<name>.portal`), with its variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(default)]
    pub vars: serde_json::Map<String, serde_json::Value>,
}

/// One incident event. The event type is the routing key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentEvent {
    pub incident_id: Uuid,
    /// Grows with each update; an event whose sequence is not newer changes nothing.
    pub sequence: i64,
    pub title: String,
    pub severity: Severity,
    pub affected: Affected,
    pub facts_verified: bool,
    pub owner: String,
    pub source: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// Kept in `internal.incident_notes`; never published, never in a notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_internal: Option<String>,
}

/// Why an event was refused; the code is the stable reason the dead letter carries.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("unknown_event_type: routing key {0} is not an incident event")]
    UnknownType(String),
    #[error("invalid_event: {0}")]
    Invalid(String),
}

/// Longest title kept.
pub const MAX_TITLE: usize = 200;

/// Decodes and checks one delivery.
pub fn parse(routing_key: &str, body: &[u8]) -> Result<(EventType, IncidentEvent), EventError> {
    let kind = EventType::from_routing_key(routing_key)
        .ok_or_else(|| EventError::UnknownType(routing_key.to_string()))?;
    let event: IncidentEvent =
        serde_json::from_slice(body).map_err(|e| EventError::Invalid(e.to_string()))?;
    let mut problems = Vec::new();
    if event.sequence < 1 {
        problems.push("sequence must be 1 or more".to_string());
    }
    if event.title.trim().is_empty() || event.title.chars().count() > MAX_TITLE {
        problems.push(format!("title must be 1 to {MAX_TITLE} characters"));
    }
    for (field, value) in [("owner", &event.owner), ("source", &event.source)] {
        if value.trim().is_empty() {
            problems.push(format!("{field} must not be empty"));
        }
    }
    if event.affected.clients.is_empty() && event.affected.projects.is_empty() {
        problems.push("affected must name at least one client or project".to_string());
    }
    if let Some(template) = &event.template {
        let ok = !template.name.is_empty()
            && template.name.len() <= 90
            && template
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
        if !ok {
            problems.push("template.name must match [a-z0-9_.-]{1,90}".to_string());
        }
        if template.version.is_some_and(|v| v < 1) {
            problems.push("template.version must be 1 or more".to_string());
        }
    }
    if problems.is_empty() {
        Ok((kind, event))
    } else {
        Err(EventError::Invalid(problems.join("; ")))
    }
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "schema_agreement.rs"]
mod schema_agreement;
