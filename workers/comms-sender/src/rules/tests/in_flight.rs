//! The decision on a message found in `sending`, from facts alone: the claim and the age of its
//! provider call are given, so the bound is checked at its exact edges without a clock.

use std::time::Duration;

use super::*;
use crate::rules::in_flight::outcome_unknown_after;

/// A message in `sending`, held by `claim`, its call started `started` ago (none: not started),
/// in that state for `unchanged`.
fn sending(claim: Option<Uuid>, started: Option<Duration>, unchanged: Duration) -> Facts {
    let mut message = message("sending");
    message.dispatch_claim = claim;
    message.call_started_at = started.map(|_| noon());
    Facts {
        message: Some(message),
        recorded: true,
        unchanged_for: unchanged,
        call_started_for: started,
        ..Facts::default()
    }
}

fn decide(settings: &Settings, facts: &Facts) -> Decision {
    book(settings).decide(&request(json!({})), facts, noon())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn the_bound_is_the_provider_timeout_plus_five_seconds() {
    let mut settings = Settings::default();
    assert_eq!(
        outcome_unknown_after(&settings),
        secs(15),
        "default 10 s timeout"
    );
    settings.sender.provider_timeout = secs(2);
    assert_eq!(outcome_unknown_after(&settings), secs(7));
}

#[test]
fn a_claim_whose_call_never_started_is_sent_again_however_long_ago_it_was_claimed() {
    let settings = Settings::default();
    let claim = Uuid::from_u128(7);
    for unchanged in [Duration::ZERO, secs(3600)] {
        let decision = decide(&settings, &sending(Some(claim), None, unchanged));
        assert!(
            matches!(decision, Decision::Redispatch { claim: c } if c == claim),
            "claimed {unchanged:?} ago, never called: {decision:?}"
        );
    }
}

#[test]
fn a_started_call_is_in_flight_until_the_bound_then_failed_as_unknown() {
    let settings = Settings::default();
    let bound = outcome_unknown_after(&settings);
    let claim = Some(Uuid::from_u128(7));
    let table: &[(Duration, &str, Option<Duration>)] = &[
        (Duration::ZERO, "in_flight", Some(bound)),
        (secs(10), "in_flight", Some(secs(5))),
        (
            bound - Duration::from_millis(1),
            "in_flight",
            Some(Duration::from_millis(1)),
        ),
        (bound, "dispatch_outcome_unknown", None),
        (secs(3600), "dispatch_outcome_unknown", None),
    ];
    for (started, expected, recheck) in table {
        // The claim's age does not matter once the call is marked: only the call's does.
        let facts = sending(claim, Some(*started), secs(3600));
        let decision = decide(&settings, &facts);
        assert_eq!(code(&decision), *expected, "call started {started:?} ago");
        if let Decision::InFlight { recheck_in } = decision {
            assert_eq!(
                Some(recheck_in),
                *recheck,
                "looked at again when the bound is reached"
            );
        }
    }
}

#[test]
fn a_claim_without_an_id_keeps_the_rule_from_before_calls_were_marked() {
    // Claimed by a sender of an earlier version (no claim id): its call may have started at the
    // claim, so it is never sent again, and it is failed 3 × timeout + 5 s after the claim.
    let settings = Settings::default();
    let table: &[(Duration, &str)] = &[
        (Duration::ZERO, "in_flight"),
        (secs(34), "in_flight"),
        (secs(35), "dispatch_outcome_unknown"),
    ];
    for (unchanged, expected) in table {
        let decision = decide(&settings, &sending(None, None, *unchanged));
        assert_eq!(code(&decision), *expected, "claimed {unchanged:?} ago");
    }
}

#[test]
fn a_stale_claim_id_on_a_message_no_longer_sending_changes_nothing() {
    let settings = Settings::default();
    let mut facts = facts();
    if let Some(message) = facts.message.as_mut() {
        message.delivery_state = "retrying".into();
        message.dispatch_claim = Some(Uuid::from_u128(7));
    }
    assert_eq!(code(&decide(&settings, &facts)), "dispatch");
}
