//! The dead-letter page's replay and purge, through the same code as `commsctl dead` and
//! `/v1/dead`: the letters are listed masked, a reason is required, a preview changes nothing, a
//! fixed message replayed goes out once through the sender, a purge deletes the payload, each
//! action is audited with the key's name and the reason, and a form without its CSRF token is
//! refused.

use comms_domain::api_keys::Role;
use reqwest::StatusCode;

use super::actions::signed_in;
use super::audited;
use crate::dead::{assert_masked, fix_contact, fleet_with_dead_letters};

async fn letter_id(fleet: &comms_tests::fleet::SendFleet, reason_part: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM internal.rejected_input WHERE reason LIKE '%' || $1 || '%'")
        .bind(reason_part)
        .fetch_one(&fleet.env.pool)
        .await
        .expect("dead letter")
}

async fn state_of(fleet: &comms_tests::fleet::SendFleet, id: i64) -> (String, i32) {
    sqlx::query_as("SELECT state, octet_length(payload) FROM internal.rejected_input WHERE id = $1")
        .bind(id)
        .fetch_one(&fleet.env.pool)
        .await
        .expect("dead letter")
}

#[tokio::test]
async fn on_call_replays_and_purges_dead_letters_from_the_console_with_a_reason_and_an_audit() {
    let (fleet, contact) = fleet_with_dead_letters().await;
    let pool = &fleet.env.pool;
    let console = signed_in(&fleet, "olu", Role::Oncall).await;
    let fix = letter_id(&fleet, "contact_id").await;
    let broken = letter_id(&fleet, "owner").await;

    let page = console.get("/console/dead").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("recipient.contact_id"),
        "listed with its reason"
    );
    assert!(page.body.contains("formaction=\"/console/dead/purge\""));
    assert_masked(&page.body);

    // Without its CSRF token, or without a reason, nothing happens.
    let forged = console
        .post_raw(
            "/console/dead/purge",
            &[("id", &broken.to_string()), ("reason", "x")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let unexplained = console
        .post(
            "/console/dead/replay",
            &[("id", &fix.to_string()), ("reason", " ")],
        )
        .await;
    assert_eq!(unexplained.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        unexplained.body.contains("a reason is required"),
        "{}",
        unexplained.body
    );
    // A preview changes nothing.
    let preview = console
        .post(
            "/console/dead/replay",
            &[
                ("id", &fix.to_string()),
                ("reason", "look first"),
                ("dry_run", "1"),
            ],
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK);
    assert!(
        preview.body.contains("Preview: would replay 1"),
        "{}",
        preview.body
    );
    assert_eq!(state_of(&fleet, fix).await.0, "dead");
    assert_eq!(fleet.state("dead-fix").await, None);

    // Fixed (the contact now exists), replayed from the page: sent once, through the sender.
    fix_contact(&fleet, contact).await;
    let replayed = console
        .post(
            "/console/dead/replay",
            &[
                ("reason_contains", "contact_id"),
                ("reason", "contact created"),
            ],
        )
        .await;
    assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.body);
    assert!(replayed.body.contains("Replayed 1"), "{}", replayed.body);
    assert!(fleet.reaches("dead-fix", "sent").await);
    assert_eq!(state_of(&fleet, fix).await.0, "replayed");

    // Purged from the page: the payload is gone.
    let purged = console
        .post(
            "/console/dead/purge",
            &[("id", &broken.to_string()), ("reason", "producer fixed")],
        )
        .await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.body);
    assert!(purged.body.contains("Purged 1"), "{}", purged.body);
    assert_eq!(state_of(&fleet, broken).await, ("purged".to_string(), 0));

    // Both audited like `commsctl dead`: who, why, how many.
    let actions: Vec<(String, String, String, i32)> = sqlx::query_as(
        "SELECT action, actor, reason, done FROM internal.dead_letter_actions
         WHERE finished_at IS NOT NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("audit");
    assert_eq!(
        actions,
        [
            ("replay".into(), "olu".into(), "contact created".into(), 1),
            ("purge".into(), "olu".into(), "producer fixed".into(), 1),
        ]
    );
    assert_eq!(
        audited(&fleet.env, "/console/dead/purge").await,
        [("olu".to_string(), false), ("olu".to_string(), true)],
        "the forged form is audited as refused"
    );

    console.stop().await;
    fleet.stop().await;
}
