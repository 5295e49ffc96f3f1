//! Escalation: a step whose send fails for good — blocked, failed, undelivered, or refused by the
//! sender before any message exists — opens one task for the sequence's escalation owner per
//! enrolment and step, recorded in the message timeline; the message owner keeps the sender's own
//! task.

use comms_tests::eventually;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Seq, WAIT, key};

const PHONE: &str = "+14155552671";

/// A two-step definition whose escalation owner (`bo`) is not the message owner (`ana`).
fn escalated(name: &str, second: &str) -> Value {
    json!({
        "name": name, "audience": "leads", "escalation_owner": "bo",
        "rollback": { "cancel_remaining": true },
        "steps": [
            { "channel": "sms", "template": "intro@1", "after": "0s" },
            { "channel": second, "template": if second == "sms" { "follow@1" } else { "final@1" }, "after": "0s" }
        ]
    })
}

/// `(step, outcome, escalation owner)` of every escalation of `enrolment`.
async fn escalations(seq: &Seq, enrolment: Uuid) -> Vec<(i32, String, String)> {
    sqlx::query_as(
        "SELECT step, outcome, escalation_owner FROM comms.sequence_escalations
         WHERE enrolment_id = $1 ORDER BY step",
    )
    .bind(enrolment)
    .fetch_all(&seq.env().pool)
    .await
    .expect("escalations")
}

/// Open tasks of `owner` whose title starts with `prefix`.
async fn tasks(seq: &Seq, owner: &str, prefix: &str) -> Vec<String> {
    sqlx::query_scalar(
        // Tasks opened by one statement (two steps blocked in one sender group) share their
        // `created_at`; the title breaks the tie, so the order is the steps' order.
        "SELECT title FROM comms.tasks WHERE owner = $1 AND state = 'open' AND title LIKE $2 || '%'
         ORDER BY created_at, title",
    )
    .bind(owner)
    .bind(prefix)
    .fetch_all(&seq.env().pool)
    .await
    .expect("tasks")
}

#[tokio::test]
async fn a_blocked_step_opens_one_task_for_the_escalation_owner_in_the_timeline() {
    let seq = Seq::start("2026-11-27T15:00:00Z").await;
    let version = seq.active(&escalated("winback", "sms")).await;
    let dana = seq.lead(PHONE, Some("America/New_York")).await;
    // No express consent on file for SMS: outreach is blocked (consent_missing).
    sqlx::query(
        "UPDATE comms.contact_channels SET consent_state = 'unknown' WHERE contact_id = $1",
    )
    .bind(dana)
    .execute(&seq.env().pool)
    .await
    .expect("consent");
    seq.enrol(dana, "winback").await;
    let enrolment = seq.enrolment(dana, "winback").await;
    for step in [1, 2] {
        assert!(seq.fleet.reaches(&key(enrolment, step), "blocked").await);
    }
    assert!(
        eventually(WAIT, || async {
            escalations(&seq, enrolment).await.len() == 2
        })
        .await
    );
    assert_eq!(
        escalations(&seq, enrolment).await,
        vec![
            (1, "blocked".to_string(), "bo".to_string()),
            (2, "blocked".to_string(), "bo".to_string())
        ]
    );
    assert_eq!(
        tasks(&seq, "bo", "Sequence").await,
        vec![
            format!("Sequence winback@{version}: step 1 not sent (blocked)"),
            format!("Sequence winback@{version}: step 2 not sent (blocked)")
        ]
    );
    // The message owner still has the sender's own task.
    assert_eq!(tasks(&seq, "ana", "Message not sent").await.len(), 2);
    let timeline = seq.fleet.timeline(&key(enrolment, 1)).await;
    assert_eq!(
        timeline
            .iter()
            .filter(|e| *e == "sequence_escalated")
            .count(),
        1,
        "{timeline:?}"
    );
    let (reason, task_owner): (String, String) = sqlx::query_as(
        "SELECT e.reason, e.detail->>'escalation_owner' FROM comms.message_events e
         JOIN comms.messages m ON m.id = e.message_id
         WHERE m.idempotency_key = $1 AND e.event_type = 'sequence_escalated'",
    )
    .bind(key(enrolment, 1))
    .fetch_one(&seq.env().pool)
    .await
    .expect("event");
    assert_eq!(
        (reason.as_str(), task_owner.as_str()),
        ("blocked: consent_missing", "bo")
    );

    // Once per enrolment and step: a later failure of the same step escalates nothing new.
    sqlx::query(
        "UPDATE comms.messages SET delivery_state = 'failed', failure_reason = 'provider_error'
         WHERE idempotency_key = $1",
    )
    .bind(key(enrolment, 1))
    .execute(&seq.env().pool)
    .await
    .expect("failed");
    assert_eq!(escalations(&seq, enrolment).await.len(), 2);
    assert_eq!(tasks(&seq, "bo", "Sequence").await.len(), 2);
    let shown = comms_domain::sequences::store::show(&seq.env().pool, ("winback", version))
        .await
        .expect("show");
    assert_eq!(shown.escalations, vec![("blocked".to_string(), 2)]);
    seq.stop().await;
}

#[tokio::test]
async fn a_step_the_sender_refuses_is_escalated_and_a_contacts_opt_out_is_not() {
    let seq = Seq::start("2026-11-27T15:00:00Z").await;
    let version = seq.active(&escalated("winback", "email")).await;
    let dana = seq.lead(PHONE, Some("America/New_York")).await;
    // Dana has no email address: the sender refuses step 2 before recording any message.
    sqlx::query("DELETE FROM comms.contact_channels WHERE contact_id = $1 AND channel = 'email'")
        .bind(dana)
        .execute(&seq.env().pool)
        .await
        .expect("no email");
    seq.enrol(dana, "winback").await;
    let enrolment = seq.enrolment(dana, "winback").await;
    assert!(seq.fleet.reaches(&key(enrolment, 1), "sent").await);
    assert!(
        eventually(WAIT, || async {
            !escalations(&seq, enrolment).await.is_empty()
        })
        .await
    );
    assert_eq!(
        escalations(&seq, enrolment).await,
        vec![(2, "refused".to_string(), "bo".to_string())]
    );
    assert_eq!(seq.fleet.state(&key(enrolment, 2)).await, None);
    assert_eq!(
        tasks(&seq, "bo", "Sequence").await,
        vec![format!(
            "Sequence winback@{version}: step 2 not sent (refused)"
        )]
    );
    // Its next action names the dead letter that holds the refused request (there is no message
    // for `commsctl message` to show).
    let (next_action, dead): (String, i64) = sqlx::query_as(
        "SELECT t.next_action, d.id FROM comms.tasks t, internal.rejected_input d
         WHERE t.owner = 'bo' AND convert_from(d.payload, 'UTF8')::jsonb ->> 'idempotency_key' = $1",
    )
    .bind(key(enrolment, 2))
    .fetch_one(&seq.env().pool)
    .await
    .expect("task and dead letter");
    assert!(
        next_action.contains(&format!("commsctl dead show {dead}"))
            && next_action.contains("commsctl pause --sequence winback")
            && !next_action.contains("commsctl message"),
        "{next_action}"
    );
    // The refusal is in the timeline of the enrolment's last message that exists: step 1.
    assert!(
        seq.fleet
            .timeline(&key(enrolment, 1))
            .await
            .contains(&"sequence_escalated".to_string())
    );

    // A block for the contact's own opt-out is the contact's choice, not a failure to escalate
    // (here the sequence does not exit on opt-outs, so the step reaches the sender).
    let mut welcome = escalated("welcome", "sms");
    welcome["exit_on"] = json!(["reply"]);
    welcome["steps"] = json!([{ "channel": "sms", "template": "intro@1", "after": "0s" }]);
    seq.active(&welcome).await;
    let eli = seq.lead("+14155552672", Some("America/New_York")).await;
    sqlx::query(
        "UPDATE comms.contact_channels SET consent_state = 'opted_out' WHERE contact_id = $1 AND channel = 'sms'",
    )
    .bind(eli)
    .execute(&seq.env().pool)
    .await
    .expect("opted out");
    seq.enrol(eli, "welcome").await;
    let other = seq.enrolment(eli, "welcome").await;
    assert!(seq.fleet.reaches(&key(other, 1), "blocked").await);
    assert_eq!(
        seq.fleet.failure(&key(other, 1)).await.0.as_deref(),
        Some("opted_out")
    );
    assert!(escalations(&seq, other).await.is_empty());
    seq.stop().await;
}
