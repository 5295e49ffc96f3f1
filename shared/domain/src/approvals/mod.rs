//! The approval workflow: the one implementation of "an owner decides on a message", shared by
//! `commsctl` and the gateway's admin API so both enforce exactly the same rules.
//!
//! The sender parks a message that needs a person in `awaiting_approval` (with an
//! `approval_requested` event and an owner task). From there:
//! - [`decide`] records an owner's (or a named delegate's) decision on exactly the content that
//!   waits — approve, reject with a reason, or mark an AI draft safe — closes the task and moves
//!   the message on (`received` to be sent, or `blocked`);
//! - [`republish`] hands an approved message's stored request back to `comms.send`, where the
//!   sender checks the content is still the approved one and continues through the pause switch
//!   and rate limits;
//! - [`expire_due`] blocks what waited longer than `approvals.expire_after`;
//! - [`housekeeping`] runs expiry and repairs lost republishes in long-running processes.
//!
//! A decision covers one content hash ([`approval_hash`]): change a word and it is void.

mod decide;
mod delegates;
mod listing;
mod republish;

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use decide::{Decided, Decision, decide, expire_due};
pub use delegates::{Delegation, add_delegate, delegates, may_decide, remove_delegate};
pub use listing::{DecisionRecord, Waiting, decided, waiting};
pub use republish::{
    RepublishError, StoredRequest, housekeeping, mark_republished, republish, republish_due,
    stored_request,
};

/// Who records decisions the fleet makes by itself (expiry).
pub const FLEET_ACTOR: &str = "comms-fleet";

/// The fingerprint of a subject and body that a decision covers: sha256 of the subject, a zero
/// byte and the body, in hex. `comms.approval_hash` in SQL computes the same bytes.
pub fn approval_hash(subject: Option<&str>, body: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(subject.unwrap_or("").as_bytes());
    hasher.update([0u8]);
    hasher.update(body.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a waiting message waits for, as its latest `approval_requested` event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// An owner approval (portal, incident, digest, approval-request and ROI content).
    Approval,
    /// A review that marks AI-drafted content safe.
    AiReview,
}

impl Gate {
    /// The gate an `approval_requested` event's reason names.
    pub fn from_reason(reason: Option<&str>) -> Self {
        if reason == Some("ai_draft_needs_review") {
            Self::AiReview
        } else {
            Self::Approval
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approval => "approval",
            Self::AiReview => "ai_review",
        }
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Approval => "an owner approval",
            Self::AiReview => "a review of its AI draft",
        })
    }
}

/// Why a decision was refused. Every message names what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no message with id or idempotency key {0}")]
    NotFound(String),
    #[error("message {id} is {state}, not awaiting approval: there is nothing to decide")]
    NotWaiting { id: uuid::Uuid, state: String },
    #[error("message {id} waits for {gate}: {hint}")]
    WrongGate {
        id: uuid::Uuid,
        gate: Gate,
        hint: &'static str,
    },
    #[error(
        "{actor} may not decide on messages owned by {owner}: only the owner or a delegate the owner named may"
    )]
    NotAllowed { actor: String, owner: String },
    #[error("only {owner} may name or remove {owner}'s delegates")]
    NotOwner { owner: String },
    #[error("{0} must not be empty")]
    Missing(&'static str),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Approval time, request to decision, by decision.
pub(crate) fn approval_seconds() -> &'static HistogramVec {
    static METRIC: LazyLock<HistogramVec> = LazyLock::new(|| {
        let opts = HistogramOpts::new(
            "comms_approval_seconds",
            "Time from a message's approval request to its decision, by decision",
        )
        .buckets(vec![
            60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 28_800.0, 86_400.0, 172_800.0,
            259_200.0, 604_800.0,
        ]);
        let histogram = HistogramVec::new(opts, &["decision"])
            .unwrap_or_else(|e| panic!("metric comms_approval_seconds is malformed: {e}"));
        // Registration only fails for a duplicate name; the histogram works either way.
        let _ = comms_runtime::metrics::registry().register(Box::new(histogram.clone()));
        histogram
    });
    &METRIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_subject_and_body_separately() {
        let a = approval_hash(Some("ab"), "c");
        let b = approval_hash(Some("a"), "bc");
        assert_ne!(
            a, b,
            "moving a character between subject and body changes the hash"
        );
        assert_eq!(approval_hash(None, "x"), approval_hash(Some(""), "x"));
        assert_eq!(a.len(), 64);
        // The same bytes as `comms.approval_hash('Hello', 'Body text')` in SQL.
        assert_eq!(
            approval_hash(Some("Hello"), "Body text"),
            "5f7f45baf6c92b6bfcea416562358d9c85110f093ef15bdfcdc38eb9de212ebe"
        );
    }

    #[test]
    fn the_gate_comes_from_the_request_reason() {
        assert_eq!(
            Gate::from_reason(Some("ai_draft_needs_review")),
            Gate::AiReview
        );
        assert_eq!(Gate::from_reason(Some("approval_required")), Gate::Approval);
        assert_eq!(Gate::from_reason(None), Gate::Approval);
    }
}
