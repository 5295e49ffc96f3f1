//! The workflow over time: waiting too long expires, a content change voids an approval, and AI
//! drafts need a review before anything else.

use std::time::Duration;

use comms_domain::approvals::{self, Gate};
use comms_domain::pause::Scope;
use comms_runtime::settings::Settings;
use comms_tests::eventually;
use serde_json::json;

use super::{ctl, ctl_with, decisions, drained, fleet, request, sent_count};

#[tokio::test]
async fn a_message_nobody_decides_on_expires_and_its_owner_is_told() {
    // The sender's housekeeping expires it by itself.
    let fleet = fleet(&[
        ("COMMS__APPROVALS__EXPIRE_AFTER", "300ms"),
        ("COMMS__APPROVALS__CHECK_INTERVAL", "100ms"),
    ])
    .await;
    fleet
        .send(&request("x-1", "approval_request", &fleet))
        .await;
    assert!(
        fleet.reaches("x-1", "blocked").await,
        "expired by the sender"
    );
    assert_eq!(
        fleet.failure("x-1").await.0.as_deref(),
        Some("approval_expired")
    );
    let recorded = decisions(&fleet, "x-1").await;
    assert_eq!(
        (
            recorded[0].decision.as_str(),
            recorded[0].decided_by.as_str()
        ),
        ("expired", "comms-fleet")
    );
    let tasks: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.title, t.state FROM comms.tasks t JOIN comms.messages m ON m.id = t.message_id
         WHERE m.idempotency_key = 'x-1' ORDER BY t.created_at",
    )
    .fetch_all(&fleet.env.pool)
    .await
    .expect("tasks");
    assert_eq!(tasks[0].1, "cancelled", "the approval task is closed");
    assert_eq!(
        tasks[1],
        ("Message expired without a decision".into(), "open".into())
    );
    assert!(fleet.timeline("x-1").await.contains(&"expired".to_string()));
    assert_eq!(sent_count(&fleet).await, 0);
    fleet.stop().await;
}

#[tokio::test]
async fn commsctl_expires_what_waited_longer_than_configured() {
    let fleet = fleet(&[]).await;
    fleet.send(&request("x-2", "incident_notice", &fleet)).await;
    assert!(fleet.reaches("x-2", "awaiting_approval").await);
    ctl(&fleet, &["approvals", "expire"]).await.expect("expire");
    assert_eq!(
        fleet.state("x-2").await.as_deref(),
        Some("awaiting_approval"),
        "72h have not passed"
    );
    let mut quick: Settings = (*fleet.env.settings).clone();
    quick.approvals.expire_after = Duration::from_millis(1);
    ctl_with(&quick, &["approvals", "expire"])
        .await
        .expect("expire");
    assert_eq!(fleet.state("x-2").await.as_deref(), Some("blocked"));
    assert_eq!(
        fleet.failure("x-2").await.0.as_deref(),
        Some("approval_expired")
    );
    fleet.stop().await;
}

#[tokio::test]
async fn content_that_changes_after_approval_needs_approval_again() {
    let fleet = fleet(&[]).await;
    fleet.send(&request("c-1", "incident_notice", &fleet)).await;
    assert!(fleet.reaches("c-1", "awaiting_approval").await);
    // Approved, but held by a pause before it could go out...
    fleet.pause(Scope::Global, None).await;
    ctl(&fleet, &["approve", "c-1", "--as", "ana"])
        .await
        .expect("approve");
    assert!(fleet.reaches("c-1", "held").await);
    // ...and meanwhile a new template version changes what it would say.
    fleet
        .approved_template("welcome", "sms", None, "Hello {{ name }}, new wording.")
        .await;
    fleet.resume(Scope::Global).await;
    assert!(
        fleet.reaches("c-1", "awaiting_approval").await,
        "the approval covered other words"
    );
    assert_eq!(sent_count(&fleet).await, 0);
    assert_eq!(fleet.open_tasks("c-1").await, 1);

    ctl(&fleet, &["approve", "c-1", "--as", "ana"])
        .await
        .expect("approve the new words");
    assert!(fleet.reaches("c-1", "sent").await);
    let sent = fleet.sandbox().messages().await.expect("sandbox");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, "Hello Dana, new wording.");
    fleet.stop().await;
}

#[tokio::test]
async fn ai_drafts_never_leave_without_a_review() {
    let fleet = fleet(&[]).await;
    let mut draft = request("ai-1", "transactional", &fleet);
    draft["ai_draft"] = json!(true);
    fleet.send(&draft).await;
    assert!(fleet.reaches("ai-1", "awaiting_approval").await);
    let waiting = approvals::waiting(&fleet.env.pool, None)
        .await
        .expect("list");
    assert_eq!(waiting[0].waits_for, Gate::AiReview);
    let wrong = ctl(&fleet, &["approve", "ai-1", "--as", "ana"])
        .await
        .expect_err("review first");
    assert!(wrong.to_string().contains("review"), "{wrong}");
    assert!(
        ctl(&fleet, &["review", "ai-1", "--as", "ana"])
            .await
            .is_err(),
        "--safe is required"
    );
    assert!(
        ctl(&fleet, &["review", "ai-1", "--safe", "--as", "bo"])
            .await
            .is_err(),
        "bo is nobody"
    );
    fleet.send(&draft).await;
    drained(&fleet.env).await;
    assert_eq!(
        sent_count(&fleet).await,
        0,
        "an unreviewed draft never leaves"
    );

    ctl(&fleet, &["review", "ai-1", "--safe", "--as", "ana"])
        .await
        .expect("review");
    assert!(fleet.reaches("ai-1", "sent").await);
    assert_eq!(decisions(&fleet, "ai-1").await[0].decision, "reviewed_safe");

    // A draft of a kind that needs approval: review first, then the owner's approval.
    let mut notice = request("ai-2", "incident_notice", &fleet);
    notice["ai_draft"] = json!(true);
    fleet.send(&notice).await;
    assert!(fleet.reaches("ai-2", "awaiting_approval").await);
    ctl(&fleet, &["review", "ai-2", "--safe", "--as", "ana"])
        .await
        .expect("review");
    let approval_waits = eventually(Duration::from_secs(20), || async {
        approvals::waiting(&fleet.env.pool, None)
            .await
            .is_ok_and(|w| {
                w.iter()
                    .any(|w| w.idempotency_key == "ai-2" && w.waits_for == Gate::Approval)
            })
    })
    .await;
    assert!(
        approval_waits,
        "after the review it waits for the owner's approval"
    );
    assert_eq!(sent_count(&fleet).await, 1);
    ctl(&fleet, &["approve", "ai-2", "--as", "ana"])
        .await
        .expect("approve");
    assert!(fleet.reaches("ai-2", "sent").await);
    fleet.stop().await;
}
