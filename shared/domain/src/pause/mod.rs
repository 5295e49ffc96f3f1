//! The pause switch: one place an on-call engineer stops automated sending, at global, channel,
//! kind, client or sequence scope, and the machinery every worker uses to honour it. A sequence
//! scope (`sequence:<name>`) holds every step of that outreach sequence: a message whose trigger
//! is `sequence:<name>`.
//!
//! - [`store`]: the stored switch (PostgreSQL is the truth) and its append-only history; every
//!   change is committed together with a `NOTIFY comms_pause`.
//! - [`switch`]: each worker's in-memory view, refreshed at once by the notification and on a
//!   short poll, that fails closed when it cannot be confirmed within the staleness bound.
//! - [`release`]: after a resume or an expiry, held messages go back to `comms.send` in the order
//!   they were created, through the same preflight and rate limits as any send.

pub mod metrics;
pub mod release;
pub mod store;
pub mod switch;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The PostgreSQL notification channel every pause change is announced on.
pub const NOTIFY_CHANNEL: &str = "comms_pause";

/// What a pause covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "value", rename_all = "snake_case")]
pub enum Scope {
    Global,
    Channel(String),
    Kind(String),
    Client(Uuid),
    /// Every step of one outreach sequence (by name, every version): `sequence:<name>`.
    Sequence(String),
}

impl Scope {
    /// Builds a scope from the stored pair; unknown scopes are refused.
    pub fn from_parts(scope: &str, value: &str) -> Option<Self> {
        match scope {
            "global" => Some(Self::Global),
            "channel" => Some(Self::Channel(value.to_string())),
            "kind" => Some(Self::Kind(value.to_string())),
            "client" => value.parse().ok().map(Self::Client),
            "sequence" => Some(Self::Sequence(value.to_string())),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Channel(_) => "channel",
            Self::Kind(_) => "kind",
            Self::Client(_) => "client",
            Self::Sequence(_) => "sequence",
        }
    }

    /// The stored value: empty for global.
    pub fn value(&self) -> String {
        match self {
            Self::Global => String::new(),
            Self::Channel(v) | Self::Kind(v) | Self::Sequence(v) => v.clone(),
            Self::Client(id) => id.to_string(),
        }
    }

    /// Whether a message of this channel, kind and client is covered.
    pub fn covers(&self, channel: &str, kind: &str, client: Option<Uuid>) -> bool {
        self.covers_step(channel, kind, client, None)
    }

    /// [`Self::covers`] for a message that may be a step of sequence `sequence` (the message's
    /// trigger is `sequence:<name>`, [`sequence_of_trigger`]).
    pub fn covers_step(
        &self,
        channel: &str,
        kind: &str,
        client: Option<Uuid>,
        sequence: Option<&str>,
    ) -> bool {
        match self {
            Self::Global => true,
            Self::Channel(c) => c == channel,
            Self::Kind(k) => k == kind,
            Self::Client(id) => client == Some(*id),
            Self::Sequence(name) => sequence == Some(name.as_str()),
        }
    }
}

/// The sequence a message belongs to, from its trigger: the scheduler sends every step with
/// trigger `sequence:<name>` (docs/sequences.md).
pub fn sequence_of_trigger(trigger: &str) -> Option<&str> {
    trigger
        .strip_prefix("sequence:")
        .filter(|name| !name.is_empty())
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Global => f.write_str("global"),
            other => write!(f, "{}={}", other.name(), other.value()),
        }
    }
}

/// One scope that is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivePause {
    pub id: Uuid,
    pub scope: Scope,
    pub reason: String,
    pub actor: String,
    pub automatic: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The incident whose unverified facts turned this client pause on (comms-incidents); that
    /// incident's own notices pass it, nothing else does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Uuid>,
}

impl ActivePause {
    /// Whether this pause lets a message through because the message is a notice of the very
    /// incident that caused the pause (`exempt`: the incident an incident notice is about).
    pub fn exempts(&self, exempt: Option<Uuid>) -> bool {
        self.incident.is_some() && self.incident == exempt
    }
}
