//! An incident that affects several clients: each notice belongs to its recipient contact's
//! client, so that client's own pauses hold it and the portal shows it to that client only.

use comms_domain::approvals::Decision;
use comms_domain::pause::Scope;
use comms_tests::eventually;
use uuid::Uuid;

use super::setup::{IncidentFleet, WAIT, incident};

#[tokio::test]
async fn each_notice_belongs_to_its_contacts_client_for_pauses_and_the_portal() {
    let f = IncidentFleet::start(&[]).await;
    let (acme, acme_contacts) = f.client("Acme", 1, "express").await;
    let (beta, beta_contacts) = f.client("Beta", 1, "express").await;
    // On-call paused Beta; the unverified incident then pauses Acme (its own pause) and leaves
    // Beta's pause as it is.
    f.fleet.pause(Scope::Client(beta), None).await;
    let id = Uuid::new_v4();
    f.event("incident.declared", &incident(id, 1, false, &[acme, beta]))
        .await;
    let acme_paused = f.client_paused(acme).await;
    assert!(acme_paused, "the incident paused Acme");

    f.event("incident.updated", &incident(id, 2, true, &[acme, beta]))
        .await;
    f.decide_proof(id, 2, Decision::Approve).await;
    assert!(
        f.wait_notice(id, 2, "done").await,
        "the notice is fanned out"
    );
    // Acme's SMS, email and portal update pass the pause its incident caused; Beta's three are
    // held by the on-call pause of Beta.
    let settled = eventually(WAIT, || async {
        f.notices(id, "sent").await == 3 && f.notices(id, "held").await == 3
    })
    .await;
    let states: Vec<(Uuid, Option<Uuid>, String, String)> = sqlx::query_as(
        "SELECT contact_id, client_id, channel, delivery_state FROM comms.messages
         WHERE record_id = $1 ORDER BY contact_id, channel",
    )
    .bind(id)
    .fetch_all(f.pool())
    .await
    .expect("messages");
    assert!(settled, "Acme's notices sent, Beta's held: {states:?}");
    for (contact, client, channel, state) in &states {
        let (own, expected_state) = if *contact == acme_contacts[0] {
            (acme, "sent")
        } else {
            assert_eq!(*contact, beta_contacts[0]);
            (beta, "held")
        };
        assert_eq!(*client, Some(own), "{channel} to {contact}: {states:?}");
        assert_eq!(state, expected_state, "{channel} to {contact}: {states:?}");
    }

    // On-call resumes Beta: its held notices go out, and each client's portal status lists
    // exactly its own three.
    f.fleet.resume(Scope::Client(beta)).await;
    let sent = eventually(WAIT, || async { f.notices(id, "sent").await == 6 }).await;
    assert!(sent, "Beta's notices are released once Beta is resumed");
    let mut portal = f.portal().await;
    for client in [acme, beta] {
        let mut channels: Vec<String> = sqlx::query_scalar(
            "SELECT channel FROM portal.delivery_status
             WHERE client_id = $1 AND kind = 'incident_notice'",
        )
        .bind(client)
        .fetch_all(&mut portal)
        .await
        .expect("delivery status");
        channels.sort();
        assert_eq!(
            channels,
            ["email", "portal", "sms"],
            "client {client} sees its own notices"
        );
    }
    f.stop().await;
}
