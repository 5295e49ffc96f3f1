//! The portal shows every affected client its approved incident notice — not only the client
//! whose portal update was the proof the owner approved — in `portal.incident_notices` and in
//! `portal.updates`, and nothing internal.

use comms_domain::approvals::Decision;
use comms_tests::eventually;
use uuid::Uuid;

use super::setup::{IncidentFleet, WAIT, incident};

#[tokio::test]
async fn every_affected_client_sees_its_approved_notice_in_the_portal() {
    let f = IncidentFleet::start(&[]).await;
    let mut clients = Vec::new();
    for name in ["Acme", "Globex", "Initech"] {
        clients.push(f.client(name, 1, "express").await.0);
    }
    let id = Uuid::new_v4();
    f.event("incident.declared", &incident(id, 1, true, &clients))
        .await;
    f.decide_proof(id, 1, Decision::Approve).await;
    assert!(f.wait_notice(id, 1, "done").await);
    // Three clients, one contact each: SMS, email and the portal update.
    let sent = eventually(WAIT, || async { f.notices(id, "sent").await == 9 }).await;
    assert!(sent, "every notice went out");

    let mut portal = f.portal().await;
    let rows: Vec<(Uuid, Option<Uuid>, String)> = sqlx::query_as(
        "SELECT incident_id, client_id, body FROM portal.incident_notices ORDER BY client_id",
    )
    .fetch_all(&mut portal)
    .await
    .expect("portal view");
    let mut expected = clients.clone();
    expected.sort();
    let seen: Vec<Option<Uuid>> = rows.iter().map(|(_, client, _)| *client).collect();
    assert_eq!(
        seen,
        expected.into_iter().map(Some).collect::<Vec<_>>(),
        "one approved notice per affected client: {rows:?}"
    );
    for (incident, _, body) in &rows {
        assert_eq!(*incident, id);
        assert_client_safe(body);
    }

    // The portal's update feed: one update per affected client, the proof client's and the
    // others', in the same client-safe words.
    let updates: Vec<(Option<Uuid>, String, Option<String>, String)> = sqlx::query_as(
        "SELECT client_id, kind, subject, body FROM portal.updates ORDER BY client_id",
    )
    .fetch_all(&mut portal)
    .await
    .expect("portal.updates as the portal role");
    let mut expected = clients.clone();
    expected.sort();
    let seen: Vec<Option<Uuid>> = updates.iter().map(|(client, ..)| *client).collect();
    assert_eq!(
        seen,
        expected.into_iter().map(Some).collect::<Vec<_>>(),
        "every affected client has its incident update in portal.updates: {updates:?}"
    );
    for (_, kind, subject, body) in &updates {
        assert_eq!(kind, "incident_notice");
        assert_client_safe(&format!("{} {body}", subject.as_deref().unwrap_or("")));
    }
    f.stop().await;
}

/// The notice's approved words, and nothing of the title or `summary_internal`.
fn assert_client_safe(text: &str) {
    assert!(text.contains("conversion tracking is delayed"), "{text}");
    for secret in ["db-7", "replica lag", "4411", "Tracking pixel outage"] {
        assert!(!text.contains(secret), "the portal sees {secret}: {text}");
    }
}
