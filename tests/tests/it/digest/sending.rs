//! A digest end to end with the real sender: built, approved once by the owner, sent on every
//! channel without a second approval per message, and visible to the portal role.

use std::time::Duration;

use comms_digest::report::approve::approve;
use comms_digest::report::build::Built;
use comms_shared::digests::send_key;
use comms_tests::eventually;
use comms_tests::fleet::SendFleet;
use uuid::Uuid;

use super::reports::{run_build, setup};
use crate::portal::as_portal;

/// The portal role's rows of `portal.report_digests`.
async fn portal_digests(fleet: &SendFleet) -> Vec<serde_json::Value> {
    let mut portal = as_portal(&fleet.env).await;
    sqlx::query_scalar("SELECT to_jsonb(v) FROM portal.report_digests v ORDER BY v.sent_at")
        .fetch_all(&mut portal)
        .await
        .expect("portal.report_digests is readable as comms_portal")
}

#[tokio::test]
async fn an_approved_digest_is_sent_without_a_second_approval_and_shown_in_the_portal() {
    let fleet = SendFleet::start(&[]).await;
    let env = &fleet.env;
    let p = setup(env).await;
    let Built::AwaitingApproval { digest_id } = run_build(env, p.period).await else {
        panic!("a draft")
    };
    let approval = approve(&env.pool, digest_id, "ana").await.expect("approve");
    let Built::Published { sends, .. } = run_build(env, p.period).await else {
        panic!("published after the approval")
    };
    assert_eq!(sends, 2, "email and portal to the one contact");

    let keys: Vec<String> = ["email", "portal"]
        .iter()
        .map(|channel| send_key(p.period, p.contact, channel))
        .collect();
    for key in &keys {
        let left = eventually(Duration::from_secs(30), || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT dispatched_at IS NOT NULL FROM comms.messages WHERE idempotency_key = $1",
            )
            .bind(key)
            .fetch_optional(&env.pool)
            .await
            .expect("message")
                == Some(true)
        })
        .await;
        assert!(
            left,
            "{key} went out on the digest's approval; state {:?}, timeline {:?}",
            fleet.state(key).await,
            fleet.timeline(key).await
        );
        assert_eq!(
            fleet.open_tasks(key).await,
            0,
            "no approval asked for {key}"
        );
    }

    let rows = portal_digests(&fleet).await;
    assert_eq!(rows.len(), 2, "both sends of the digest: {rows:?}");
    let (subject, body): (String, String) =
        sqlx::query_as("SELECT portal_subject, portal_body FROM comms.digests WHERE id = $1")
            .bind(digest_id)
            .fetch_one(&env.pool)
            .await
            .expect("digest");
    let portal_message: Uuid =
        sqlx::query_scalar("SELECT id FROM comms.messages WHERE idempotency_key = $1")
            .bind(&keys[1])
            .fetch_one(&env.pool)
            .await
            .expect("portal message");
    let row = rows
        .iter()
        .find(|r| r["message_id"] == serde_json::json!(portal_message))
        .expect("the portal send is listed");
    assert_eq!(row["report_title"], "March report");
    assert_eq!(row["subject"], subject.as_str());
    assert_eq!(row["body"], body.as_str());
    assert!(!body.contains("behind on invoices"), "{body}");
    let shown: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(row["approved_at"].clone()).expect("approved_at");
    assert_eq!(
        shown.timestamp_micros(),
        approval.approved_at.timestamp_micros(),
        "the digest's approval time"
    );
    fleet.stop().await;
}
