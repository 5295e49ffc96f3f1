//! A client's booked-result (ROI) summary for the portal: built by `commsctl report roi` only from
//! the booked outcomes recorded for the client in the period, checked for portal safety by the
//! sender, held for the owner's approval, and in `portal.updates` only once approved.

use chrono::Utc;
use comms_domain::outcomes::{self, roi};
use comms_tests::fleet::SendFleet;
use serde_json::json;
use uuid::Uuid;

use super::at;
use crate::approvals::ctl;

const WORDING: &str = "Booked results {{ period }}: {{ meetings }} meetings and {{ sales }} sales \
    ({{ value }}), based on bookings recorded by your account team; figures may vary.\n\
    Source: {{ source }}";

async fn booked(fleet: &SendFleet, id: &str, booked: serde_json::Value, when: &str) {
    let outcome = outcomes::parse(
        json!({
            "outcome_id": id, "type": "booked", "source": "crm", "occurred_at": when,
            "booked": booked, "attributed_to": { "record": { "type": "client", "id": fleet.client_id } }
        })
        .to_string()
        .as_bytes(),
    )
    .expect("valid");
    outcomes::record(&fleet.env.pool, &outcome, Utc::now())
        .await
        .expect("recorded");
}

/// `commsctl <args>`.
async fn roi_command(fleet: &SendFleet, args: Vec<String>) -> anyhow::Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ctl(fleet, &args).await
}

/// The latest message whose key starts with `roi:`: `(key, state, failure_reason)`.
async fn summary_message(fleet: &SendFleet) -> Option<(String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT idempotency_key, delivery_state, failure_reason FROM comms.messages
         WHERE idempotency_key LIKE 'roi:%' ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_optional(&fleet.env.pool)
    .await
    .expect("message")
}

#[tokio::test]
async fn a_booked_result_summary_is_sourced_checked_and_approved_before_the_portal_shows_it() {
    let fleet = SendFleet::start(&[]).await;
    fleet
        .approved_template(
            roi::DEFAULT_TEMPLATE,
            "portal",
            Some("Your results"),
            WORDING,
        )
        .await;
    fleet
        .approved_template(
            "roi_unsourced",
            "portal",
            None,
            "{{ sales }} sales this month!",
        )
        .await;
    let contact: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.contacts (name, client_id) VALUES ('Dana', $1) RETURNING id",
    )
    .bind(fleet.client_id)
    .fetch_one(&fleet.env.pool)
    .await
    .expect("contact");
    let (client, who) = (fleet.client_id.to_string(), contact.to_string());
    let period = [
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        "2026-12-01T00:00:00Z",
    ];
    let args = |extra: &[&str]| -> Vec<String> {
        ["report", "roi", "--client", &client, "--contact", &who]
            .iter()
            .chain(period.iter())
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };

    // Nothing recorded in the period: there is no sourced figure, so nothing is built.
    let refused = roi_command(&fleet, args(&[]))
        .await
        .expect_err("no figures");
    assert!(
        refused.to_string().contains("no_sourced_figures"),
        "{refused}"
    );

    booked(
        &fleet,
        "b1",
        json!({ "kind": "sale", "value": 1200.5, "currency": "USD" }),
        "2026-11-10T10:00:00Z",
    )
    .await;
    booked(
        &fleet,
        "b2",
        json!({ "kind": "meeting" }),
        "2026-11-12T10:00:00Z",
    )
    .await;
    booked(
        &fleet,
        "b3",
        json!({ "kind": "sale", "value": 99, "currency": "USD" }),
        "2026-12-02T10:00:00Z",
    )
    .await;
    let summary = roi::summary(
        &fleet.env.pool,
        fleet.client_id,
        at("2026-11-01T00:00:00Z"),
        at("2026-12-01T00:00:00Z"),
    )
    .await
    .expect("summary");
    assert_eq!((summary.meetings, summary.sales), (1, 1));
    assert_eq!(summary.vars()["value"], "1200.50 USD");
    assert_eq!(
        summary.vars()["source"],
        "booked results recorded by crm (2)"
    );

    // Wording without a source line fails the portal-safe check: blocked, never offered.
    roi_command(&fleet, args(&["--template", "roi_unsourced"]))
        .await
        .expect("published");
    let seen = comms_tests::eventually(super::WAIT, || async {
        summary_message(&fleet)
            .await
            .is_some_and(|m| m.1 == "blocked")
    })
    .await;
    assert!(seen, "the unsourced summary is blocked");
    let blocked = summary_message(&fleet).await.and_then(|m| m.2);
    assert_eq!(blocked.as_deref(), Some("portal_unsafe"));

    // The sourced wording waits for the owner's approval, then reaches the portal.
    roi_command(&fleet, args(&[])).await.expect("published");
    let key = summary.request(contact, roi::DEFAULT_TEMPLATE)["idempotency_key"]
        .as_str()
        .expect("key")
        .to_string();
    assert!(fleet.reaches(&key, "awaiting_approval").await);
    let shown: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.portal_updates")
        .fetch_one(&fleet.env.pool)
        .await
        .expect("portal");
    assert_eq!(shown, 0, "nothing in the portal before the approval");
    ctl(&fleet, &["approve", &key, "--as", "ana"])
        .await
        .expect("approved");
    assert!(fleet.reaches(&key, "sent").await);
    let body: String = sqlx::query_scalar(
        "SELECT u.body FROM portal.updates u JOIN comms.portal_updates p ON p.id = u.id
         JOIN comms.messages m ON m.id = p.message_id WHERE m.idempotency_key = $1",
    )
    .bind(&key)
    .fetch_one(&fleet.env.pool)
    .await
    .expect("in the portal");
    assert!(
        body.contains("1 meetings and 1 sales (1200.50 USD)"),
        "{body}"
    );
    assert!(
        body.contains("Source: booked results recorded by crm (2)"),
        "{body}"
    );
    // Building it again with the same figures changes nothing.
    roi_command(&fleet, args(&[])).await.expect("published");
    assert_eq!(fleet.state(&key).await.as_deref(), Some("sent"));
    fleet.stop().await;
}
