//! The failover state machine with a controlled clock: who gets the next message, when a probe
//! goes out, when the traffic comes back, and what a pinned message may do.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use comms_runtime::clock::ManualClock;

use super::*;

const INTERVAL: Duration = Duration::from_secs(30);

fn sms(threshold: u32) -> (Failover, ManualClock) {
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 30, 19, 0, 0)
            .single()
            .expect("a time"),
    );
    let failover = Failover::new(
        Arc::new(clock.clone()),
        &[("sms", vec!["twilio", "twilio_secondary"])],
        threshold,
        INTERVAL,
    );
    (failover, clock)
}

fn later(clock: &ManualClock, by: Duration) {
    clock.set(clock.now() + chrono::Duration::from_std(by).expect("a short duration"));
}

fn pick(failover: &Failover, pinned: Option<&str>) -> Selection {
    pick_as(failover, pinned, true)
}

fn pick_as(failover: &Failover, pinned: Option<&str>, may_probe: bool) -> Selection {
    match failover.select("sms", pinned, may_probe) {
        Some(Pick::Use(selection)) => selection,
        other => panic!("expected a provider, got {other:?}"),
    }
}

#[test]
fn the_first_provider_takes_the_traffic_while_it_answers() {
    let (failover, _) = sms(3);
    for _ in 0..5 {
        let s = pick(&failover, None);
        assert_eq!((s.name, s.probe, s.failover_from), ("twilio", false, None));
        assert_eq!(failover.report("sms", s.index, Health::Up), None);
    }
    assert_eq!(failover.current("sms"), Some("twilio"));
}

#[test]
fn a_failover_class_answer_moves_the_next_message_and_starts_one_episode() {
    let (failover, _) = sms(3);
    let first = pick(&failover, None);
    let switch = failover
        .report("sms", first.index, Health::Failing)
        .expect("the traffic moves");
    assert_eq!(switch.from, "twilio");
    assert_eq!(switch.to, Some("twilio_secondary"));
    assert!(switch.episode_started && !switch.episode_ended);
    let next = pick(&failover, None);
    assert_eq!(next.name, "twilio_secondary");
    assert_eq!(next.failover_from, Some("twilio"));
    // More failures of the first provider (answers of calls already made) change nothing more.
    assert_eq!(failover.report("sms", 0, Health::Failing), None);
    assert_eq!(failover.report("sms", next.index, Health::Up), None);
    assert!(!failover.all_failing("sms"));
}

#[test]
fn degraded_answers_open_the_breaker_only_at_the_threshold() {
    let (failover, _) = sms(3);
    assert_eq!(failover.report("sms", 0, Health::Degraded), None);
    assert_eq!(failover.report("sms", 0, Health::Degraded), None);
    // An answer in between starts the count again.
    assert_eq!(failover.report("sms", 0, Health::Up), None);
    assert_eq!(failover.report("sms", 0, Health::Degraded), None);
    assert_eq!(failover.report("sms", 0, Health::Degraded), None);
    let switch = failover.report("sms", 0, Health::Degraded);
    assert_eq!(switch.and_then(|s| s.to), Some("twilio_secondary"));
}

#[test]
fn one_probe_after_the_interval_and_its_success_brings_the_traffic_back() {
    let (failover, clock) = sms(3);
    failover.report("sms", 0, Health::Failing);
    // Before the interval: no probe, everything goes to the second provider.
    later(&clock, INTERVAL - Duration::from_secs(1));
    assert_eq!(pick(&failover, None).name, "twilio_secondary");
    later(&clock, Duration::from_secs(1));
    let probe = pick(&failover, None);
    assert_eq!((probe.name, probe.probe), ("twilio", true));
    // Only one probe at a time: the others keep going to the second provider.
    for _ in 0..3 {
        let other = pick(&failover, None);
        assert_eq!((other.name, other.probe), ("twilio_secondary", false));
    }
    let switch = failover
        .report("sms", probe.index, Health::Up)
        .expect("failback");
    assert_eq!(
        (switch.from, switch.to),
        ("twilio_secondary", Some("twilio"))
    );
    assert!(switch.episode_ended && !switch.episode_started);
    assert_eq!(pick(&failover, None).name, "twilio");
}

#[test]
fn a_failed_probe_waits_another_interval() {
    let (failover, clock) = sms(3);
    failover.report("sms", 0, Health::Failing);
    later(&clock, INTERVAL);
    let probe = pick(&failover, None);
    assert!(probe.probe);
    assert_eq!(failover.report("sms", probe.index, Health::Failing), None);
    later(&clock, INTERVAL - Duration::from_secs(1));
    assert_eq!(pick(&failover, None).name, "twilio_secondary");
    later(&clock, Duration::from_secs(1));
    assert!(pick(&failover, None).probe);
}

#[test]
fn a_retry_is_never_the_probe() {
    let (failover, clock) = sms(3);
    failover.report("sms", 0, Health::Failing);
    later(&clock, INTERVAL);
    // Retries keep going to the provider that works, however long the first has rested.
    for _ in 0..3 {
        let retry = pick_as(&failover, None, false);
        assert_eq!((retry.name, retry.probe), ("twilio_secondary", false));
    }
    // The next fresh message is the probe.
    let fresh = pick(&failover, None);
    assert_eq!((fresh.name, fresh.probe), ("twilio", true));
}

#[test]
fn a_probe_never_reported_is_given_up_after_an_interval() {
    let (failover, clock) = sms(3);
    failover.report("sms", 0, Health::Failing);
    later(&clock, INTERVAL);
    assert!(pick(&failover, None).probe);
    // Its message was held by a pause, say: no report ever comes.
    later(&clock, INTERVAL);
    let again = pick(&failover, None);
    assert_eq!((again.name, again.probe), ("twilio", true));
}

#[test]
fn a_pinned_message_never_goes_elsewhere() {
    let (failover, clock) = sms(3);
    failover.report("sms", 0, Health::Failing);
    assert_eq!(
        failover.select("sms", Some("twilio"), false),
        Some(Pick::Away {
            provider: "twilio".into()
        })
    );
    // Pinned to the provider that has the traffic: it goes there.
    assert_eq!(
        pick(&failover, Some("twilio_secondary")).name,
        "twilio_secondary"
    );
    // Its own provider's probe is due: the pinned message may be the probe.
    later(&clock, INTERVAL);
    let probe = pick(&failover, Some("twilio"));
    assert_eq!((probe.name, probe.probe), ("twilio", true));
    // A provider no longer configured cannot take it either.
    assert!(matches!(
        failover.select("sms", Some("gone"), true),
        Some(Pick::Away { .. })
    ));
}

#[test]
fn with_every_provider_failing_the_first_takes_the_traffic() {
    let (failover, _) = sms(3);
    failover.report("sms", 0, Health::Failing);
    let switch = failover
        .report("sms", 1, Health::Failing)
        .expect("nothing left");
    assert_eq!((switch.from, switch.to), ("twilio_secondary", None));
    assert!(
        !switch.episode_started,
        "the episode started at the first failover"
    );
    assert!(failover.all_failing("sms"));
    assert_eq!(pick(&failover, None).name, "twilio");
    // A pinned message goes to its own provider: there is nowhere better.
    assert_eq!(
        pick(&failover, Some("twilio_secondary")).name,
        "twilio_secondary"
    );
    // The first provider answers again: the traffic and the episode end there.
    let back = failover.report("sms", 0, Health::Up).expect("back");
    assert_eq!(back.to, Some("twilio"));
    assert!(back.episode_ended);
}

#[test]
fn a_single_provider_has_no_failover_and_reset_starts_from_the_top() {
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 30, 19, 0, 0)
            .single()
            .expect("a time"),
    );
    let failover = Failover::new(
        Arc::new(clock.clone()),
        &[("email", vec!["sendgrid"])],
        3,
        INTERVAL,
    );
    // No switch to speak of (no metric, no log line, no task): only the breaker state moves.
    assert_eq!(failover.report("email", 0, Health::Failing), None);
    assert!(failover.all_failing("email"));
    assert_eq!(failover.report("email", 0, Health::Up), None);
    assert!(!failover.all_failing("email"));
    failover.report("email", 0, Health::Failing);
    failover.reset("email");
    assert!(!failover.all_failing("email"));
    assert_eq!(failover.current("email"), Some("sendgrid"));
    // A channel without a list (the portal) is left to the circuit breaker.
    assert!(failover.all_failing("portal"));
    assert_eq!(failover.select("portal", None, true), None);
}
