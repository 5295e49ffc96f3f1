//! Settings of `comms-sequences`: how often due steps are looked for and how many go per round,
//! and the tracked links of review requests (signed by the sender, checked by the gateway).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequencesSettings {
    /// How often the scheduler looks for due steps, corrections and exits.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Enrolments handled per round (one transaction).
    pub batch: u32,
    /// Signs the tracked links of `review_request` messages (HMAC-SHA256); a followed link with a
    /// wrong signature is refused.
    #[serde(serialize_with = "super::masked::secret")]
    pub review_link_secret: SecretString,
    /// How long a review request's tracked link stays valid after the message is rendered.
    #[serde(with = "humantime_serde")]
    pub review_link_ttl: Duration,
    /// How often `comms-sequences` reads the `comms_figures_*` metrics from the database (0: never).
    #[serde(with = "humantime_serde")]
    pub figures_interval: Duration,
}

impl Default for SequencesSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            batch: 100,
            review_link_secret: SecretString::from("change-me-review-link-secret"),
            review_link_ttl: Duration::from_secs(90 * 24 * 3600),
            figures_interval: Duration::from_secs(30),
        }
    }
}
