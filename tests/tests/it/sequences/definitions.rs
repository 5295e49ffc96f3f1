//! Definitions: activation is the escalation owner's audited approval, refused without an
//! escalation owner or a rollback path; an active version never changes.

use comms_domain::sequences::{SequenceError, store};
use serde_json::json;

use super::{Seq, three_steps};

async fn audit(seq: &Seq, name: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT action, actor FROM comms.sequence_audit WHERE sequence_name = $1 ORDER BY id",
    )
    .bind(name)
    .fetch_all(&seq.env().pool)
    .await
    .expect("audit")
}

#[tokio::test]
async fn a_sequence_without_an_escalation_owner_or_a_rollback_path_cannot_be_activated() {
    let seq = Seq::prepare("2026-11-27T15:00:00Z").await;
    let pool = seq.env().pool.clone();
    let now = chrono::Utc::now();
    let mut bare = three_steps("winback");
    bare.as_object_mut()
        .expect("object")
        .remove("escalation_owner");
    bare.as_object_mut().expect("object").remove("rollback");
    let v1 = seq.define(&bare).await.expect("a draft may lack both");
    match store::activate(&pool, ("winback", v1), "ana", now).await {
        Err(SequenceError::NotActivatable { missing, .. }) => {
            assert_eq!(missing, "no escalation owner and no rollback path");
        }
        other => panic!("activation must be refused, got {other:?}"),
    }
    let mut no_rollback = three_steps("winback");
    no_rollback
        .as_object_mut()
        .expect("object")
        .remove("rollback");
    let v2 = seq.define(&no_rollback).await.expect("draft");
    let refused = store::activate(&pool, ("winback", v2), "ana", now).await;
    assert!(
        matches!(&refused, Err(SequenceError::NotActivatable { missing, .. }) if missing == "no rollback path"),
        "{refused:?}"
    );

    // With both, only the escalation owner (or a delegate) activates it.
    let v3 = seq.define(&three_steps("winback")).await.expect("draft");
    let stranger = store::activate(&pool, ("winback", v3), "sam", now).await;
    assert!(matches!(
        stranger,
        Err(SequenceError::NotActivatable { .. })
    ));
    let active = store::activate(&pool, ("winback", v3), "ana", now)
        .await
        .expect("the owner activates it");
    assert_eq!(
        (active.state.as_str(), active.activated_by.as_deref()),
        ("active", Some("ana"))
    );
    assert_eq!(
        audit(&seq, "winback").await,
        [
            ("added", "ana"),
            ("activation_refused", "ana"),
            ("added", "ana"),
            ("activation_refused", "ana"),
            ("added", "ana"),
            ("activation_refused", "sam"),
            ("activated", "ana"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    // The database refuses any change to the active version, steps included.
    let changed = sqlx::query(
        "UPDATE comms.sequences SET escalation_owner = 'sam' WHERE name = 'winback' AND version = $1",
    )
    .bind(v3)
    .execute(&pool)
    .await;
    assert!(changed.is_err(), "an active version is immutable");
    let step = sqlx::query(
        "UPDATE comms.sequence_steps SET delay_seconds = 1 WHERE sequence_name = 'winback' AND sequence_version = $1",
    )
    .bind(v3)
    .execute(&pool)
    .await;
    assert!(step.is_err(), "its steps too");
    seq.stop().await;
}

#[tokio::test]
async fn a_step_needs_an_approved_template_of_its_channel() {
    let seq = Seq::prepare("2026-11-27T15:00:00Z").await;
    let mut wrong = three_steps("winback");
    wrong["steps"][0]["template"] = json!("final@1"); // an email template on an SMS step
    wrong["steps"][1]["template"] = json!("nothing@1");
    let refused = seq.define(&wrong).await.expect_err("refused");
    assert!(
        refused.contains("steps[0].template: template final@1 is for email"),
        "{refused}"
    );
    assert!(
        refused.contains("steps[1].template: template nothing@1 does not exist"),
        "{refused}"
    );
    seq.stop().await;
}
