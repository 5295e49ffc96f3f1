//! The pause switch's unit tests: the gate, pending pauses and announcements.

use super::*;
use crate::pause::Scope;

fn global() -> ActivePause {
    ActivePause {
        id: Uuid::new_v4(),
        scope: Scope::Global,
        reason: "incident".into(),
        actor: "oncall".into(),
        automatic: false,
        started_at: chrono::Utc::now(),
        expires_at: None,
        incident: None,
    }
}

#[tokio::test]
async fn a_new_pause_waits_for_dispatches_in_flight_which_see_it_before_their_provider_call() {
    let switch = PauseSwitch::new(Duration::from_secs(5));
    switch.apply(Vec::new()).await;
    let (in_flight, verdict) = switch.enter("sms", "transactional", None).await;
    assert_eq!(verdict, Verdict::Clear);

    let applying = tokio::spawn({
        let switch = switch.clone();
        async move { switch.apply(vec![global()]).await }
    });
    let mut seen = false;
    for _ in 0..1000 {
        if switch.pending_cover("sms", "transactional", None).is_some() {
            seen = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        seen,
        "the dispatch in flight sees the pause before its provider call"
    );
    assert!(
        switch.active().is_empty(),
        "not applied while a dispatch is in flight"
    );

    drop(in_flight);
    applying.await.expect("apply finishes");
    assert_eq!(switch.active().len(), 1);
    assert!(switch.pending_cover("sms", "transactional", None).is_none());
    let (_next, verdict) = switch.enter("email", "outreach", None).await;
    assert!(matches!(verdict, Verdict::Paused(_)));
}

#[test]
fn a_switch_never_loaded_is_blind() {
    let switch = PauseSwitch::new(Duration::from_secs(5));
    assert_eq!(
        switch.verdict("sms", "transactional", None),
        Verdict::Blind { stale_for: None }
    );
}

#[tokio::test]
async fn an_announced_pause_covers_dispatches_until_a_read_settles_it() {
    let switch = PauseSwitch::new(Duration::from_secs(5));
    switch.apply(Vec::new()).await;
    let pause = global();
    switch.expect(pause.clone());
    switch.expect(pause.clone());
    assert_eq!(
        switch.pending_cover("email", "outreach", None),
        Some(pause.clone()),
        "covered before any re-read"
    );
    switch.apply(vec![pause.clone()]).await;
    assert_eq!(switch.active(), vec![pause.clone()]);
    assert!(switch.pending_cover("email", "outreach", None).is_none());

    // Announced, but a read finds it already gone (resumed at once): nothing stays pending.
    switch.apply(Vec::new()).await;
    switch.expect(global());
    switch.apply(Vec::new()).await;
    assert!(switch.pending_cover("sms", "transactional", None).is_none());
}

#[test]
fn announcements_carry_the_commit_time_and_the_pause() {
    let pause = global();
    let payload = serde_json::json!({ "at": 1_700_000_000_000_i64, "pause": pause }).to_string();
    let read = Announcement::parse(&payload).expect("parses");
    assert_eq!(read.at, 1_700_000_000_000);
    assert_eq!(read.pause, Some(pause));
    let resumed = Announcement::parse(r#"{"at": 5, "pause": null}"#).expect("parses");
    assert!(resumed.pause.is_none());
    let older = Announcement::parse("1700000000000").expect("a bare time still parses");
    assert_eq!((older.at, older.pause), (1_700_000_000_000, None));
    assert!(Announcement::parse("not a payload").is_none());
}

#[tokio::test]
async fn an_incident_pause_lets_only_that_incidents_notices_through() {
    let switch = PauseSwitch::new(Duration::from_secs(5));
    let (client, incident) = (Uuid::new_v4(), Uuid::new_v4());
    let caused = ActivePause {
        scope: Scope::Client(client),
        incident: Some(incident),
        ..global()
    };
    switch.apply(vec![caused.clone()]).await;
    let held = Verdict::Paused(caused.clone());
    assert_eq!(switch.verdict("sms", "outreach", Some(client)), held);
    assert_eq!(
        switch.verdict_except(
            "sms",
            "incident_notice",
            Some(client),
            Some(Uuid::new_v4()),
            None
        ),
        held,
        "a notice of another incident is held"
    );
    assert_eq!(
        switch.verdict_except("sms", "incident_notice", Some(client), Some(incident), None),
        Verdict::Clear
    );
    // Any other pause still holds the incident's own notices.
    let everything = global();
    switch.apply(vec![caused, everything.clone()]).await;
    assert_eq!(
        switch.verdict_except("sms", "incident_notice", Some(client), Some(incident), None),
        Verdict::Paused(everything)
    );
}

#[tokio::test]
async fn a_sequence_pause_holds_only_that_sequences_steps() {
    let switch = PauseSwitch::new(Duration::from_secs(5));
    let pause = ActivePause {
        scope: Scope::Sequence("winback".into()),
        ..global()
    };
    switch.apply(vec![pause.clone()]).await;
    let step = |name| switch.verdict_except("sms", "outreach", None, None, Some(name));
    assert_eq!(step("winback"), Verdict::Paused(pause));
    assert_eq!(step("welcome"), Verdict::Clear);
    assert_eq!(switch.verdict("sms", "outreach", None), Verdict::Clear);
    assert_eq!(
        crate::pause::sequence_of_trigger("sequence:winback"),
        Some("winback")
    );
    assert_eq!(crate::pause::sequence_of_trigger("lead.created"), None);
}
