//! Who a portal update is for: a contact by id (no portal address needed), or the contact that
//! already owns a bare phone number or email address.

use std::time::Duration;

use comms_tests::eventually;
use serde_json::json;
use uuid::Uuid;

use super::{portal_fleet, portal_request};
use crate::approvals::ctl;

#[tokio::test]
async fn a_portal_update_reaches_a_contact_by_id_or_by_the_address_it_already_owns() {
    let fleet = portal_fleet().await;
    let phone = "+14155552671";
    let known = fleet.sms_contact(phone, "unknown").await;
    let text = "Your March report is ready.";
    let mut by_id = portal_request("by-id", "portal_update", text, fleet.client_id);
    by_id["recipient"] = json!({ "contact_id": known });
    let mut by_phone = portal_request("by-phone", "portal_update", text, fleet.client_id);
    by_phone["recipient"] = json!({ "phone": phone });
    for (key, request) in [("by-id", &by_id), ("by-phone", &by_phone)] {
        fleet.send(request).await;
        assert!(
            fleet.reaches(key, "awaiting_approval").await,
            "{key}: recorded and waiting for its approval, not refused for want of a portal address"
        );
        ctl(&fleet, &["approve", key, "--as", "ana"])
            .await
            .expect("approve");
        assert!(fleet.reaches(key, "sent").await, "{key} is published");
    }
    let shown_to: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT m.idempotency_key, pu.contact_id FROM comms.portal_updates pu
         JOIN comms.messages m ON m.id = pu.message_id ORDER BY 1",
    )
    .fetch_all(&fleet.env.pool)
    .await
    .expect("portal updates");
    assert_eq!(
        shown_to,
        [
            ("by-id".to_string(), known),
            ("by-phone".to_string(), known)
        ],
        "both updates are shown to the contact who owns the phone number"
    );
    let contacts: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.contacts")
        .fetch_one(&fleet.env.pool)
        .await
        .expect("contacts");
    assert_eq!(
        contacts, 1,
        "no second contact was made up for the phone number"
    );

    let mut unknown = portal_request("unknown-id", "portal_update", text, fleet.client_id);
    unknown["recipient"] = json!({ "contact_id": Uuid::new_v4() });
    fleet.send(&unknown).await;
    let reason = || async {
        sqlx::query_scalar::<_, String>("SELECT reason FROM internal.rejected_input")
            .fetch_optional(&fleet.env.pool)
            .await
            .expect("rejected input")
    };
    assert!(
        eventually(Duration::from_secs(20), || async {
            reason().await.is_some()
        })
        .await,
        "an unknown contact is refused and kept"
    );
    let reason = reason().await.unwrap_or_default();
    assert!(
        reason.contains("recipient.contact_id"),
        "the refusal names the field: {reason}"
    );
    fleet.stop().await;
}
