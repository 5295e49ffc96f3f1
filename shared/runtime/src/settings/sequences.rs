//! Settings of `comms-sequences`: how often due steps are looked for and how many go per round.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequencesSettings {
    /// How often the scheduler looks for due steps, corrections and exits.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Enrolments handled per round (one transaction).
    pub batch: u32,
}

impl Default for SequencesSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            batch: 100,
        }
    }
}
