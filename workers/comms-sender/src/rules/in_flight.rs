//! The decision on a message found in `sending` (a redelivery, or a duplicate request, of a
//! message some dispatch claimed): the window of `dispatch_outcome_unknown`
//! (docs/reliability.md#the-window-of-dispatch_outcome_unknown).
//!
//! The claim and the start of its provider call are two recorded facts
//! (`comms_domain::messages::ledger::calls`). A claim whose call never started sent nothing: it
//! is released and the message sent again. A call that started may have reached the provider:
//! the message waits for the process that called to record the outcome, for at most
//! [`outcome_unknown_after`] from the call's start, and is then failed for a person to check.
//! Pure, like the rest of the rule book: the ages come in [`Facts`].

use std::time::Duration;

use comms_runtime::settings::Settings;

use super::{Book, Decision, Facts};

impl Book<'_> {
    /// A message found in `sending`: a claim whose provider call never started is released and
    /// sent again; one whose call started is in flight (another delivery is dispatching it right
    /// now) until [`outcome_unknown_after`] has passed since the call started, and then its process
    /// died between the call and recording its outcome, and whether it went out cannot be known:
    /// failed for a person to check rather than risk a duplicate.
    pub(super) fn in_flight(&self, facts: &Facts) -> Decision {
        let claim = facts.message.as_ref().and_then(|m| m.dispatch_claim);
        let (age, bound) = match (claim, facts.call_started_for) {
            (Some(claim), None) => return Decision::Redispatch { claim },
            (Some(_), Some(started_for)) => (started_for, outcome_unknown_after(self.settings)),
            // A claim made before claims had ids: its call may have started at the claim.
            (None, _) => (facts.unchanged_for, unmarked_unknown_after(self.settings)),
        };
        if let Some(recheck_in) = bound.checked_sub(age).filter(|left| !left.is_zero()) {
            return Decision::InFlight { recheck_in };
        }
        Decision::Unknown {
            reason:
                "dispatch_outcome_unknown: a provider call started but its outcome was never recorded"
                    .into(),
            next_action: "check the provider's log; if it did not go out, send again with a new idempotency key",
        }
    }
}

/// Time a live process has to record the outcome of a provider call it has returned from.
const RECORD_GRACE: Duration = Duration::from_secs(5);

/// How long after its provider call started a message still in `sending` is taken for lost and
/// failed as `dispatch_outcome_unknown`: `sender.provider_timeout` (no HTTP call lasts longer)
/// plus 5 s to record the outcome (15 s with the default 10 s timeout). A process that is alive
/// has recorded its outcome by then; only a redelivery of a message whose process died finds it.
pub fn outcome_unknown_after(settings: &Settings) -> Duration {
    settings.sender.provider_timeout + RECORD_GRACE
}

/// The same for a claim made before claims had ids (`dispatch_claim` is null), whose call may
/// have started at the claim: 3 × `sender.provider_timeout` + 5 s, the rule before the calls
/// were marked.
fn unmarked_unknown_after(settings: &Settings) -> Duration {
    settings.sender.provider_timeout * 3 + RECORD_GRACE
}
