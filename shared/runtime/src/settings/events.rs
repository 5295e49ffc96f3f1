//! Settings of `comms-events`: the outbox relay, the overdue-task check and webhooks out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSettings {
    /// How often the relay looks for unpublished outbox rows when it found none last time.
    #[serde(with = "humantime_serde")]
    pub relay_interval: Duration,
    /// Outbox rows the relay publishes per round (one transaction).
    pub relay_batch: u32,
    /// How often open tasks past their due time are looked for (`task.overdue`).
    #[serde(with = "humantime_serde")]
    pub overdue_interval: Duration,
    /// One webhook HTTP call: connect, send and answer.
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Attempts of one delivery before it is given up as `failed` (retried with the broker's
    /// exponential delays: about 35 minutes in all with the default of 12).
    pub webhook_max_attempts: u32,
    /// Consecutive failed attempts (across deliveries) after which a webhook is disabled, with a
    /// task for its owner.
    pub webhook_disable_after: u32,
    /// Allows webhook URLs that resolve to loopback, private or link-local addresses. Off in
    /// production: the fleet must not be usable to reach internal services (SSRF).
    pub webhook_allow_private: bool,
}

impl Default for EventsSettings {
    fn default() -> Self {
        Self {
            relay_interval: Duration::from_millis(200),
            relay_batch: 500,
            overdue_interval: Duration::from_secs(30),
            webhook_timeout: Duration::from_secs(5),
            webhook_max_attempts: 12,
            webhook_disable_after: 50,
            webhook_allow_private: false,
        }
    }
}
