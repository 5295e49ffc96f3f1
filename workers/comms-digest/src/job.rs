//! The two jobs on `comms.digest.jobs`, as typed wire structs with stable names.
//!
//! Unknown keys are refused (a typo must not silently change a window), and every rule a handler
//! relies on is checked here once, so a bad job is rejected with a reason that names the field.

use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Routing key of a report-digest job.
pub const REPORT: &str = "digest.report";
/// Routing key of an event to batch.
pub const BATCH: &str = "digest.batch";
/// The `schema` value of both jobs (absent means v1).
pub const JOB_V1: &str = "comms.digest_job.v1";

/// Build (or continue) the digest of one report period.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub report_period_id: Uuid,
    pub owner: String,
    pub source: String,
    pub requested_at: DateTime<Utc>,
}

/// One event an upstream app wants batched instead of sent at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Unique per event: a repeated id is a redelivery and is collected once.
    pub event_id: String,
    /// The batch key is (contact, channel, topic).
    pub contact_id: Uuid,
    pub channel: String,
    pub topic: String,
    pub window: WindowSpec,
    pub max_events: u32,
    pub template: BatchTemplate,
    #[serde(default = "transactional")]
    pub kind: String,
    pub record: BatchRecord,
    pub owner: String,
    pub source: String,
    /// What the template lists for this event (a JSON object).
    pub event: serde_json::Map<String, serde_json::Value>,
}

fn transactional() -> String {
    "transactional".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchTemplate {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRecord {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Uuid,
}

/// Exactly one of: `every` (fixed windows aligned to the epoch, e.g. `"30m"`), `look_back`
/// (starts at the bucket's first event) or `daily_at` (`"HH:MM"` in the recipient's time zone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub look_back: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_at: Option<String>,
}

/// A checked window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Every(Duration),
    LookBack(Duration),
    DailyAt(NaiveTime),
}

impl WindowSpec {
    pub fn parse(&self) -> Result<Window, String> {
        let duration = |field: &str, text: &str| -> Result<Duration, String> {
            let d = humantime::parse_duration(text)
                .map_err(|e| format!("window.{field}: {e} (for example \"30m\")"))?;
            if d < Duration::from_secs(1) || d > Duration::from_secs(31 * 24 * 3600) {
                return Err(format!("window.{field}: must be from 1s to 31 days"));
            }
            Ok(d)
        };
        match (&self.every, &self.look_back, &self.daily_at) {
            (Some(every), None, None) => Ok(Window::Every(duration("every", every)?)),
            (None, Some(back), None) => Ok(Window::LookBack(duration("look_back", back)?)),
            (None, None, Some(at)) => NaiveTime::parse_from_str(at, "%H:%M")
                .map(Window::DailyAt)
                .map_err(|_| format!("window.daily_at: expected HH:MM, found {at:?}")),
            _ => Err("window: exactly one of every, look_back, daily_at".into()),
        }
    }
}

fn schema_ok(schema: &Option<String>) -> Result<(), String> {
    match schema.as_deref() {
        None | Some(JOB_V1) => Ok(()),
        Some(other) => Err(format!("schema: expected {JOB_V1}, found {other:?}")),
    }
}

fn named(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() || value.len() > 200 || value.contains('\0') {
        return Err(format!("{field}: 1-200 characters, not blank"));
    }
    Ok(())
}

impl ReportJob {
    pub fn check(&self) -> Result<(), String> {
        schema_ok(&self.schema)?;
        named("owner", &self.owner)?;
        named("source", &self.source)
    }
}

impl BatchEvent {
    /// Checks every rule and returns the window.
    pub fn check(&self) -> Result<Window, String> {
        schema_ok(&self.schema)?;
        named("event_id", &self.event_id)?;
        named("topic", &self.topic)?;
        named("owner", &self.owner)?;
        named("source", &self.source)?;
        if !["sms", "email", "portal"].contains(&self.channel.as_str()) {
            return Err(format!(
                "channel: expected sms, email or portal, found {:?}",
                self.channel
            ));
        }
        if self.max_events == 0 || self.max_events > 1000 {
            return Err("max_events: must be from 1 to 1000".into());
        }
        if self.template.version == Some(0) {
            return Err("template.version: must be at least 1".into());
        }
        if serde_json::to_string(&self.event).is_ok_and(|s| s.contains("\\u0000")) {
            return Err("event: may not contain U+0000".into());
        }
        self.window.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(every: Option<&str>, back: Option<&str>, at: Option<&str>) -> WindowSpec {
        WindowSpec {
            every: every.map(Into::into),
            look_back: back.map(Into::into),
            daily_at: at.map(Into::into),
        }
    }

    #[test]
    fn a_window_is_exactly_one_kind() {
        assert_eq!(
            spec(Some("30m"), None, None).parse(),
            Ok(Window::Every(Duration::from_secs(1800)))
        );
        assert!(spec(Some("30m"), Some("5m"), None).parse().is_err());
        assert!(spec(None, None, None).parse().is_err());
        assert!(spec(None, None, Some("25:00")).parse().is_err());
        assert!(spec(None, Some("soon"), None).parse().is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let raw = r#"{"report_period_id":"00000000-0000-4000-8000-000000000001","owner":"ana",
            "source":"crm","requested_at":"2025-01-01T00:00:00Z","priority":1}"#;
        let err = serde_json::from_str::<ReportJob>(raw).expect_err("unknown key");
        assert!(err.to_string().contains("priority"), "{err}");
    }
}

#[cfg(test)]
#[path = "schema_agreement.rs"]
mod schema_agreement;
