//! The sender's rule book: everything that decides whether, when and with what content a message
//! goes out, in one place, used alike by the one-message path ([`crate::one`]) and the group path
//! ([`crate::group`]).
//!
//! - [`facts`] loads what the rules need, for a group of requests at once (a single message is a
//!   group of one): the message's recorded state, the contact with its consent, the record's
//!   client, the template version, the approvals, the quiet-hours time zone.
//! - [`Book::decide`] is pure: request, facts and the time in, a [`Decision`] out. Every refusal,
//!   hold, deferral and approval wait is a variant of it; [`crate::settle`] turns each into the
//!   runtime's `Outcome` (and its recorded state change), in one match.
//! - [`Book::gate`] is the last rule before the provider, as pure: the pause switch's verdict,
//!   read after the rate limit immediately before the provider call (it cannot be loaded
//!   earlier: a pause applied while a message waited for its rate token must stop it).
//! - [`Book::answer`] reads the provider's answer: sent, retried, or failed for good.
//!
//! Neither path applies a rule of its own: the group path only groups the reads and writes
//! around the same decisions, and hands a member whose decision is not to send to the one-message
//! path, which records that decision.

pub mod answer;
mod decide;
pub mod facts;
mod in_flight;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use comms_domain::pause::ActivePause;
use comms_runtime::settings::Settings;
use uuid::Uuid;

pub use decide::{incident_exemption, needs_approval};
pub use facts::Facts;
pub use in_flight::outcome_unknown_after;

use crate::portal_safe::Problem;
use crate::quiet_hours::Window;
use crate::render::Rendered;

/// The settings the rules read: the rule book of one sender.
#[derive(Clone, Copy)]
pub struct Book<'a> {
    pub settings: &'a Settings,
    /// The quiet-hours window (outreach and review-request SMS).
    pub window: Window,
    /// The time zone of a recipient whose zone is known neither to the contact nor the request.
    pub default_zone: Tz,
}

/// A refusal: the reason code, a sentence for the timeline, and what the owner should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub detail: String,
    pub next_action: &'static str,
}

/// What the rules prepared before they ruled: stored whatever the decision (approvers and the
/// timeline see the content that would go out; consent a request brings is kept on the contact).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The client the message belongs to ([`facts::Facts::record_client`]).
    pub client_id: Option<Uuid>,
    /// The request carries express consent the contact has not recorded: record it.
    pub keep_consent: bool,
    /// The rendered content, once the template rendered.
    pub content: Option<Rendered>,
}

/// What happens to one message. Every variant but [`Decision::Dispatch`] and [`Decision::Send`]
/// ends the message's turn; [`crate::settle::settle`] records it and answers the runtime.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Already sent, failed or blocked: a redelivery or a duplicate
    /// request changes nothing.
    Settled,
    /// Found in `sending` with its provider call started less than
    /// [`outcome_unknown_after`] ago: another delivery may be dispatching it right now. Looked at
    /// again in `recheck_in` (when the bound is reached), not sooner.
    InFlight { recheck_in: std::time::Duration },
    /// Found in `sending`, held by a claim whose provider call never started (its process stopped
    /// before marking the call): nothing was sent, so the claim is released and the message
    /// decided again and sent through the normal path, with its idempotency key.
    Redispatch { claim: Uuid },
    /// Found in `sending` with its provider call started [`outcome_unknown_after`] ago or more:
    /// the process that called the provider died before recording the outcome, which cannot be
    /// known, so it is failed for a person.
    Unknown {
        reason: String,
        next_action: &'static str,
    },
    /// Refused for good before any provider: `blocked` with a reason and an owner task.
    Block {
        refusal: Refusal,
        prepared: Option<Prepared>,
    },
    /// Portal-visible wording that is not portal-safe: `blocked` as `portal_unsafe`.
    PortalUnsafe {
        problems: Vec<Problem>,
        prepared: Prepared,
    },
    /// Needs an owner's decision (`approval_required`) or an AI-draft review
    /// (`ai_draft_needs_review`) on exactly this content first.
    AwaitApproval {
        reason: &'static str,
        hash: String,
        prepared: Prepared,
    },
    /// Not yet (`send_after`, `quiet_hours`): comes back at `until`.
    Defer {
        until: DateTime<Utc>,
        reason: &'static str,
        prepared: Prepared,
    },
    /// Every rule passed: take a rate token, then ask [`Book::gate`].
    Dispatch(Prepared),
    /// A released message whose older released sibling to the same recipient is still on its way.
    WaitForOlder,
    /// A pause covers it: held durably until the pause ends.
    Hold(ActivePause),
    /// The pause switch could not be confirmed recently enough: not now.
    Blind {
        stale_for: Option<std::time::Duration>,
    },
    /// Clear: claim it and call the provider.
    Send(Prepared),
}

impl Decision {
    /// What was prepared on the way to this decision, to store whatever it is.
    pub fn prepared(&self) -> Option<&Prepared> {
        match self {
            Self::Block { prepared, .. } => prepared.as_ref(),
            Self::PortalUnsafe { prepared, .. }
            | Self::AwaitApproval { prepared, .. }
            | Self::Defer { prepared, .. }
            | Self::Dispatch(prepared)
            | Self::Send(prepared) => Some(prepared),
            Self::Settled
            | Self::InFlight { .. }
            | Self::Redispatch { .. }
            | Self::Unknown { .. }
            | Self::WaitForOlder
            | Self::Hold(_)
            | Self::Blind { .. } => None,
        }
    }
}
