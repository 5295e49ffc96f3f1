//! A digest end to end with the real sender: built, approved once by the owner, sent on every
//! channel without a second approval per message, and visible to the portal role.

use std::time::Duration;

use comms_digest::report::approve::approve;
use comms_digest::report::build::Built;
use comms_domain::digests::{link, send_key};
use comms_tests::eventually;
use comms_tests::fleet::SendFleet;
use uuid::Uuid;

use comms_domain::digests::view;
use comms_runtime::clock::ManualClock;

use super::reports::{run_build, setup};
use super::{Worker, at};
use crate::approvals::ctl;
use crate::portal::as_portal;

/// Waits until both sends of the period's digest to `contact` left the sender.
async fn both_sent(fleet: &SendFleet, period: Uuid, contact: Uuid) -> bool {
    eventually(Duration::from_secs(30), || async {
        let sent: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM comms.messages
             WHERE idempotency_key = ANY($1) AND dispatched_at IS NOT NULL",
        )
        .bind(vec![
            send_key(period, contact, "email"),
            send_key(period, contact, "portal"),
        ])
        .fetch_one(&fleet.env.pool)
        .await
        .expect("messages");
        sent == 2
    })
    .await
}

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
    // The approved wording with the recipient's own signed view link in the placeholder's place.
    let view_url: String =
        sqlx::query_scalar("SELECT view_url FROM comms.digest_sends WHERE idempotency_key = $1")
            .bind(&keys[1])
            .fetch_one(&env.pool)
            .await
            .expect("the send's link");
    assert!(body.contains(link::PLACEHOLDER), "{body}");
    assert_eq!(row["body"], body.replace(link::PLACEHOLDER, &view_url));
    assert!(row["body"].as_str().is_some_and(|b| b.contains(&view_url)));
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

#[tokio::test]
async fn commsctl_builds_through_the_queue_approves_and_shows_the_digest() {
    let fleet = SendFleet::start(&[]).await;
    let env = &fleet.env;
    let p = setup(env).await;
    let worker = Worker::start(env, &ManualClock::new(at("2025-04-01T08:00:00Z")));
    let period = p.period.to_string();

    ctl(&fleet, &["digest", "build", "--period", &period])
        .await
        .expect("build enqueued");
    let built = eventually(Duration::from_secs(30), || async {
        view::find(&env.pool, p.period)
            .await
            .expect("find")
            .is_some_and(|d| d.digest.state == "awaiting_approval")
    })
    .await;
    let digest = view::find(&env.pool, p.period).await.expect("find");
    assert!(
        built,
        "the worker built the digest from the job: {digest:?}"
    );
    let digest_id = digest.expect("digest").digest.id.to_string();

    let unknown = ctl(
        &fleet,
        &["digest", "build", "--period", &Uuid::new_v4().to_string()],
    )
    .await
    .expect_err("an unknown period is refused");
    assert!(
        unknown.to_string().contains("no report period"),
        "{unknown}"
    );
    let refused = ctl(&fleet, &["digest", "approve", &digest_id, "--as", "bo"])
        .await
        .expect_err("bo is not ana's delegate");
    assert!(refused.to_string().contains("may not decide"), "{refused}");

    ctl(&fleet, &["digest", "approve", &digest_id, "--as", "ana"])
        .await
        .expect("approved");
    assert!(
        both_sent(&fleet, p.period, p.contact).await,
        "approve enqueues the publishing job and both sends go out"
    );
    let shown = view::find(&env.pool, p.period)
        .await
        .expect("find")
        .expect("the digest");
    assert_eq!(shown.digest.state, "published");
    assert_eq!(shown.digest.approved_by.as_deref(), Some("ana"));
    assert_eq!(shown.sends.len(), 2);
    assert_eq!(shown.views.total, 0);
    let listed = view::list(&env.pool, Some("published"))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    for args in [
        vec!["digest", "show", &digest_id],
        vec!["--json", "digest", "show", &period],
        vec!["digest", "list", "--state", "published"],
    ] {
        ctl(&fleet, &args).await.expect("show and list work");
    }
    worker.stop().await;
    fleet.stop().await;
}
