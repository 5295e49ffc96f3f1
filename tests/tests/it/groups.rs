//! The sender deciding deliveries in groups: a burst that is already queued when the sender
//! starts is taken in groups, and every rule of the one-message path still holds for each
//! message — once per key, refusals with their reasons, the pause switch, provider failures.

mod answer_kept;
mod killed;
mod release_batches;

use std::collections::BTreeSet;

use comms_domain::pause::Scope;
use comms_domain::pause::store::{self as pause_store, PauseRequest};
use comms_sandbox::FaultSpec;
use comms_tests::fleet::{SendFleet, sms_request};
use serde_json::json;
use uuid::Uuid;

/// Groups of up to 40 from a queue the sender finds full.
const GROUPED: &[(&str, &str)] = &[
    ("COMMS__CONSUMER__GROUP_MAX", "40"),
    ("COMMS__CONSUMER__PREFETCH", "200"),
    ("COMMS__CONSUMER__CONCURRENCY", "80"),
];

/// A fleet whose sender is not started yet (so a burst can be queued first), grouping as
/// [`GROUPED`] plus `extra` settings, with the `welcome` template and the 20 known contacts of
/// [`phone`].
pub(crate) async fn fleet_with(extra: &[(&str, &str)]) -> SendFleet {
    let settings: Vec<(&str, &str)> = GROUPED.iter().chain(extra).copied().collect();
    let fleet = SendFleet::without_sender(&settings).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}, welcome aboard!")
        .await;
    for i in 0..20 {
        fleet.sms_contact(&phone(i), "implied").await;
    }
    fleet
}

pub(crate) async fn fleet() -> SendFleet {
    fleet_with(&[]).await
}

/// Queues `count` ordinary SMS requests keyed `<prefix>-<i>` to the known contacts.
pub(crate) async fn queue(fleet: &SendFleet, prefix: &str, count: usize) {
    for i in 0..count {
        fleet
            .send(&sms_request(
                &format!("{prefix}-{i}"),
                &phone(i),
                fleet.client_id,
            ))
            .await;
    }
}

/// Pauses `scope` straight in the database, before the sender starts: it loads the switch
/// before it consumes anything.
pub(crate) async fn pause_before_start(fleet: &SendFleet, scope: Scope) {
    pause_store::pause(
        &fleet.env.pool,
        &PauseRequest {
            scope,
            reason: "maintenance".into(),
            actor: "oncall".into(),
            expires_at: None,
            automatic: false,
        },
    )
    .await
    .expect("pause");
}

pub(crate) fn phone(i: usize) -> String {
    format!("+1415555{:04}", 1000 + i % 20)
}

/// Whether `sql` (a count) reaches `expected` within 30 s.
pub(crate) async fn count_reaches(fleet: &SendFleet, sql: &str, expected: usize) -> bool {
    let expected = i64::try_from(expected).expect("count");
    comms_tests::eventually(std::time::Duration::from_secs(30), || async {
        count(fleet, sql).await == expected
    })
    .await
}

/// Every message keyed `<prefix>-<i>` (`n` of them) went out once: the provider accepted
/// exactly `n` calls and they are the recorded provider ids, each timeline reads `received,
/// dispatching, sent` with one attempt, and no message left a task for its owner.
pub(crate) async fn assert_sent_once_each(fleet: &SendFleet, prefix: &str, n: usize) {
    let accepted: BTreeSet<String> = fleet
        .sandbox()
        .messages()
        .await
        .expect("sandbox")
        .into_iter()
        .map(|m| m.id)
        .collect();
    let recorded: BTreeSet<String> = sqlx::query_scalar(
        "SELECT provider_message_id FROM comms.messages WHERE idempotency_key LIKE $1 || '-%'",
    )
    .bind(prefix)
    .fetch_all(&fleet.env.pool)
    .await
    .expect("ids")
    .into_iter()
    .collect();
    assert_eq!(accepted.len(), n, "one provider call per message");
    assert_eq!(
        accepted, recorded,
        "the provider's ids are the recorded ones"
    );
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        assert_eq!(
            fleet.timeline(&key).await,
            ["received", "dispatching", "sent"],
            "{key}: one claim, one call, its answer recorded"
        );
        assert_eq!(fleet.failure(&key).await.1, 1, "{key}: one attempt");
    }
    assert_eq!(
        count(
            fleet,
            "SELECT count(*) FROM comms.tasks WHERE message_id IS NOT NULL"
        )
        .await,
        0,
        "nobody has anything to check"
    );
}

pub(crate) async fn count(fleet: &SendFleet, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&fleet.env.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_queued_burst_goes_out_once_each_and_refusals_keep_their_reasons() {
    let mut fleet = fleet().await;
    fleet.sms_contact("+14155550101", "opted_out").await;
    const BURST: usize = 150;
    for i in 0..BURST {
        fleet
            .send(&sms_request(
                &format!("burst-{i}"),
                &phone(i),
                fleet.client_id,
            ))
            .await;
        if i == 70 {
            // The same key again, inside the burst.
            fleet
                .send(&sms_request("burst-3", &phone(3), fleet.client_id))
                .await;
            fleet
                .send(&sms_request("stopped", "+14155550101", fleet.client_id))
                .await;
            let mut ghost = sms_request("ghost", &phone(1), fleet.client_id);
            ghost["record"]["id"] = json!(Uuid::new_v4().to_string());
            fleet.send(&ghost).await;
            let mut unfilled = sms_request("unfilled", &phone(2), fleet.client_id);
            unfilled["template"]["vars"] = json!({});
            fleet.send(&unfilled).await;
            // A recipient nobody knows yet: the contact is created on the way.
            fleet
                .send(&sms_request("newcomer", "+14155559999", fleet.client_id))
                .await;
        }
    }
    fleet.start_sender();

    let last = format!("burst-{}", BURST - 1);
    assert!(fleet.reaches(&last, "sent").await);
    assert!(
        count_reaches(
            &fleet,
            "SELECT count(*) FROM comms.messages WHERE idempotency_key LIKE 'burst-%' AND delivery_state = 'sent'",
            BURST,
        )
        .await,
        "every burst message is sent"
    );
    assert!(fleet.reaches("newcomer", "sent").await);
    for (key, reason) in [
        ("stopped", "opted_out"),
        ("ghost", "record_not_found"),
        ("unfilled", "template_render_failed"),
    ] {
        assert!(fleet.reaches(key, "blocked").await, "{key} is blocked");
        let (failure, attempts) = fleet.failure(key).await;
        assert!(
            failure.as_deref().is_some_and(|f| f.starts_with(reason)),
            "{key}: {failure:?}"
        );
        assert_eq!(attempts, 0, "{key} never reached a provider");
    }

    // Exactly one provider call per sent message, none for the refused ones.
    let delivered = fleet.sandbox().messages().await.expect("sandbox");
    assert_eq!(delivered.len(), BURST + 1);
    assert!(delivered.iter().all(|m| m.to != "+14155550101"));
    assert_eq!(
        fleet.timeline("burst-3").await,
        ["received", "dispatching", "sent"]
    );
    let (provider_id, body, segments): (String, String, i32) = sqlx::query_as(
        "SELECT provider_message_id, body, sms_segments FROM comms.messages WHERE idempotency_key = 'burst-42'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("message");
    assert!(delivered.iter().any(|m| m.id == provider_id));
    assert_eq!((body.as_str(), segments), ("Hi Dana, welcome aboard!", 1));
    let unrecorded_events = count(
        &fleet,
        "SELECT count(*) FROM comms.messages m WHERE NOT EXISTS (
             SELECT 1 FROM comms.message_events e WHERE e.message_id = m.id AND e.event_type = 'sent')
         AND m.delivery_state = 'sent'",
    )
    .await;
    assert_eq!(
        unrecorded_events, 0,
        "every sent message has its sent event"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_pause_in_force_holds_a_whole_queued_burst_and_resuming_sends_each_once() {
    let mut fleet = fleet().await;
    // Committed before the sender starts: it loads the switch before it consumes anything.
    pause_before_start(&fleet, Scope::Channel("sms".into())).await;
    const BURST: usize = 60;
    queue(&fleet, "paused", BURST).await;
    fleet.start_sender();
    let held = "SELECT count(*) FROM comms.messages WHERE delivery_state = 'held'";
    assert!(
        count_reaches(&fleet, held, BURST).await,
        "every message is held"
    );
    assert!(
        fleet
            .sandbox()
            .messages()
            .await
            .expect("sandbox")
            .is_empty()
    );
    assert_eq!(
        count(
            &fleet,
            "SELECT COALESCE(sum(attempt_count), 0)::bigint FROM comms.messages"
        )
        .await,
        0,
        "a hold is not an attempt"
    );

    fleet.resume(Scope::Channel("sms".into())).await;
    let sent = "SELECT count(*) FROM comms.messages WHERE delivery_state = 'sent'";
    assert!(
        count_reaches(&fleet, sent, BURST).await,
        "every held message is sent after the resume"
    );
    assert_eq!(
        fleet.sandbox().messages().await.expect("sandbox").len(),
        BURST
    );
    fleet.stop().await;
}

#[tokio::test]
async fn provider_failures_inside_a_group_are_retried_or_failed_one_by_one() {
    let mut fleet = fleet().await;
    let sandbox = fleet.sandbox();
    sandbox
        .add_fault(&FaultSpec {
            recipient: Some(phone(4)),
            status: Some(500),
            times: Some(1),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    sandbox
        .add_fault(&FaultSpec {
            recipient: Some(phone(7)),
            status: Some(400),
            error_code: Some(21211),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    queue(&fleet, "mixed", 20).await;
    fleet.start_sender();

    assert!(fleet.reaches("mixed-4", "sent").await, "retried, then sent");
    assert_eq!(fleet.failure("mixed-4").await.1, 2, "two provider attempts");
    assert!(fleet.reaches("mixed-7", "failed").await, "refused for good");
    assert_eq!(fleet.failure("mixed-7").await.1, 1);
    for i in (0..20).filter(|i| *i != 4 && *i != 7) {
        assert!(fleet.reaches(&format!("mixed-{i}"), "sent").await);
    }
    fleet.stop().await;
}

#[tokio::test]
async fn a_queued_burst_under_a_rate_limit_still_goes_out_once_each() {
    let mut fleet = fleet_with(&[
        ("COMMS__RATE__SMS__PER_SECOND", "100"),
        ("COMMS__RATE__SMS__BURST", "5"),
    ])
    .await;
    // More than a burst in every group: what finds no token waits for one on its own.
    queue(&fleet, "limited", 60).await;
    fleet.start_sender();
    let sent = "SELECT count(*) FROM comms.messages WHERE idempotency_key LIKE 'limited-%' AND delivery_state = 'sent'";
    assert!(
        count_reaches(&fleet, sent, 60).await,
        "every message is sent"
    );
    assert_eq!(fleet.sandbox().messages().await.expect("sandbox").len(), 60);
    fleet.stop().await;
}

#[tokio::test]
async fn a_failing_provider_under_a_burst_trips_the_breaker_once() {
    let mut fleet = fleet_with(&[("COMMS__PAUSE__BREAKER_FAILURES", "3")]).await;
    fleet
        .sandbox()
        .add_fault(&FaultSpec {
            status: Some(500),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    // Many more failures in one group than the breaker's threshold.
    queue(&fleet, "failing", 30).await;
    fleet.start_sender();
    // Every message ends held by the automatic pause (its retries come back and are held too).
    let held = "SELECT count(*) FROM comms.messages WHERE idempotency_key LIKE 'failing-%' AND delivery_state = 'held'";
    assert!(
        count_reaches(&fleet, held, 30).await,
        "every message is held"
    );
    let automatic_pauses = count(
        &fleet,
        "SELECT count(*) FROM comms.pause_events WHERE action IN ('pause', 'extend') AND actor = 'comms-sender (circuit breaker)'",
    )
    .await;
    assert_eq!(
        automatic_pauses, 1,
        "one automatic pause, not one per run of failures"
    );
    let tasks = count(
        &fleet,
        "SELECT count(*) FROM comms.tasks WHERE owner = 'on-call' AND title LIKE 'sms paused automatically%'",
    )
    .await;
    assert_eq!(tasks, 1, "one task for on-call");
    fleet.stop().await;
}
