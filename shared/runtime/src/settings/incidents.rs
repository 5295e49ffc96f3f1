//! Settings of the incident fan-out worker (`COMMS__INCIDENTS__*`), in a file of their own so
//! the other sections stay short.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentSettings {
    /// Incident templates (base names, comma-separated) whose later updates need no new owner
    /// approval once the incident's first notice was approved (`COMMS__INCIDENTS__PREAPPROVED_UPDATE_TEMPLATES`).
    pub preapproved_update_templates: String,
    /// Targets (contacts) published per chunk before the progress is committed.
    pub chunk_size: i64,
    /// How often the worker looks for approval decisions and unfinished fan-outs.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// The template (base name) of a notice when the event names none.
    pub default_template: String,
    /// The template (base name) of a resolution notice when the event names none.
    pub resolution_template: String,
}

impl IncidentSettings {
    /// Refuses a chunk size or check interval the worker could not work with.
    pub fn validate(&self) -> Result<(), String> {
        if self.chunk_size < 1 {
            return Err("key `incidents.chunk_size`: must be at least 1".into());
        }
        if self.check_interval.is_zero() {
            return Err("key `incidents.check_interval`: must be longer than zero".into());
        }
        for (key, name) in [
            ("incidents.default_template", &self.default_template),
            ("incidents.resolution_template", &self.resolution_template),
        ] {
            if name.trim().is_empty() {
                return Err(format!("key `{key}`: must name a template"));
            }
        }
        Ok(())
    }

    /// The pre-approved update templates as a list.
    pub fn preapproved(&self) -> Vec<&str> {
        self.preapproved_update_templates
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .collect()
    }
}

impl Default for IncidentSettings {
    fn default() -> Self {
        Self {
            preapproved_update_templates: String::new(),
            chunk_size: 500,
            check_interval: Duration::from_secs(1),
            default_template: "incident-notice".into(),
            resolution_template: "incident-resolved".into(),
        }
    }
}
