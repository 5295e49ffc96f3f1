//! Settings of `comms-digest`: report digests (schedule, freshness, templates, signed views) and
//! notification batching (how often due batches are flushed).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DigestSettings {
    /// A cron expression (`min hour day month weekday`, UTC) at which one `digest.report` job is
    /// enqueued per period that has closed and has no digest yet. Empty (the default): off.
    pub schedule: String,
    /// Figures whose `as_of` is older than this when a digest is built are stale: the digest
    /// carries the approved stale-data caveat, or is blocked if none is approved.
    #[serde(with = "humantime_serde")]
    pub freshness: Duration,
    /// The approved template (email channel) every emailed digest is rendered from.
    pub email_template: String,
    /// The approved template (portal channel) every portal digest is rendered from.
    pub portal_template: String,
    /// The approved template whose body is the stale-data caveat wording.
    pub stale_caveat_template: String,
    /// How often due notification batches are looked for.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Batches flushed per round (one transaction each).
    pub flush_batch: u32,
    /// Signs report-view links (HMAC-SHA256); a view with a wrong signature is refused.
    #[serde(serialize_with = "super::masked::secret")]
    pub view_secret: SecretString,
    /// How long a recipient's report-view link stays valid after the digest is published.
    #[serde(with = "humantime_serde")]
    pub view_ttl: Duration,
}

impl DigestSettings {
    /// Refuses a schedule that is not a cron expression and flushing that could never happen, so
    /// `--check-config` fails where the worker would.
    pub fn validate(&self) -> Result<(), String> {
        let schedule = self.schedule.trim();
        if let Some(Err(error)) =
            (!schedule.is_empty()).then(|| <croner::Cron as std::str::FromStr>::from_str(schedule))
        {
            return Err(format!(
                "key `digest.schedule`: must be a cron expression (min hour day month weekday, UTC) or empty: {error}"
            ));
        }
        if self.flush_batch == 0 {
            return Err("key `digest.flush_batch`: must be at least 1".into());
        }
        if self.flush_interval.is_zero() {
            return Err("key `digest.flush_interval`: must be longer than zero".into());
        }
        if self.view_ttl.is_zero() {
            return Err("key `digest.view_ttl`: must be longer than zero".into());
        }
        Ok(())
    }
}

impl Default for DigestSettings {
    fn default() -> Self {
        Self {
            schedule: String::new(),
            freshness: Duration::from_secs(7 * 24 * 3600),
            email_template: "report_digest.email".into(),
            portal_template: "report_digest.portal".into(),
            stale_caveat_template: "report_digest.stale_caveat".into(),
            flush_interval: Duration::from_secs(1),
            flush_batch: 100,
            view_secret: SecretString::from("change-me-digest-view-secret"),
            view_ttl: Duration::from_secs(90 * 24 * 3600),
        }
    }
}
