//! Fan-out: every consented contact once, skips recorded with their reason, and exactly once
//! across a worker killed mid fan-out.

use comms_tests::eventually;
use uuid::Uuid;

use super::setup::{IncidentFleet, WAIT, incident};

#[tokio::test]
async fn fan_out_reaches_every_consented_contact_once_and_records_each_skip() {
    let f = IncidentFleet::start(&[("COMMS__INCIDENTS__CHUNK_SIZE", "3")]).await;
    let (a, a_contacts) = f.client("Acme", 4, "implied").await;
    let (b, b_contacts) = f.client("Beta", 3, "unknown").await;
    let (empty, _) = f.client("Empty", 0, "implied").await;
    // One opted out of SMS, one suppressed on email.
    for (contact, channel, state) in [
        (a_contacts[1], "sms", "opted_out"),
        (b_contacts[2], "email", "suppressed"),
    ] {
        sqlx::query("UPDATE comms.contact_channels SET consent_state = $3 WHERE contact_id = $1 AND channel = $2")
            .bind(contact)
            .bind(channel)
            .bind(state)
            .execute(f.pool())
            .await
            .expect("consent");
    }
    let id = Uuid::new_v4();
    f.event("incident.declared", &incident(id, 1, true, &[a, b, empty]))
        .await;
    f.decide_proof(id, 1, comms_domain::approvals::Decision::Approve)
        .await;
    assert!(f.wait_notice(id, 1, "done").await);
    // 7 contacts x 2 channels - 2 skipped + 2 portal updates.
    let expected = 7 * 2 - 2 + 2;
    let sent = eventually(WAIT, || async { f.notices(id, "sent").await == expected }).await;
    assert!(sent, "sent: {}", f.notices(id, "sent").await);
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT contact_id, channel FROM comms.messages WHERE record_id = $1
                               GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .bind(id)
    .fetch_one(f.pool())
    .await
    .expect("duplicates");
    assert_eq!(duplicates, 0);
    // SMS and email notices take the sender's group path: each is recorded and claimed in one
    // statement, so its `received` and `dispatching` events share a transaction time; the
    // one-message path records and claims in separate transactions.
    let (notices, grouped): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE r.occurred_at = d.occurred_at)
         FROM comms.messages m
         JOIN comms.message_events r ON r.message_id = m.id AND r.event_type = 'received'
         JOIN comms.message_events d ON d.message_id = m.id AND d.event_type = 'dispatching'
         WHERE m.record_id = $1 AND m.channel IN ('sms', 'email')",
    )
    .bind(id)
    .fetch_one(f.pool())
    .await
    .expect("paths");
    assert_eq!(notices, 7 * 2 - 2, "every SMS and email notice dispatched");
    assert_eq!(
        grouped, notices,
        "every SMS and email notice took the group path"
    );
    let mut skips: Vec<(Option<Uuid>, String, String)> = sqlx::query_as(
        "SELECT s.contact_id, s.channel, s.reason FROM comms.incident_skips s
         JOIN comms.incident_notices n ON n.id = s.notice_id WHERE n.incident_id = $1",
    )
    .bind(id)
    .fetch_all(f.pool())
    .await
    .expect("skips");
    skips.sort();
    let mut want = vec![
        (None, "portal".to_string(), "no_contact".to_string()),
        (Some(a_contacts[1]), "sms".into(), "opted_out".into()),
        (Some(b_contacts[2]), "email".into(), "suppressed".into()),
    ];
    want.sort();
    assert_eq!(skips, want);
    let shown = comms_incidents::ops::show(f.pool(), id)
        .await
        .expect("show");
    assert_eq!(shown.notices[0].skipped_by_reason.len(), 3);
    assert!(shown.time_to_first_notice_seconds.is_some());
    f.stop().await;
}

#[tokio::test]
async fn a_worker_process_killed_with_sigkill_mid_fan_out_resumes_and_every_contact_gets_exactly_one_notice()
 {
    let mut f = IncidentFleet::start_process(&[("COMMS__INCIDENTS__CHUNK_SIZE", "100")]).await;
    let (client, _) = f.client("Big", 2500, "implied").await; // 5,000 recipients (SMS + email)
    let id = Uuid::new_v4();
    f.event("incident.declared", &incident(id, 1, true, &[client]))
        .await;
    f.decide_proof(id, 1, comms_domain::approvals::Decision::Approve)
        .await;
    // Kill the worker once part of the fan-out is committed, then start a new one.
    let progressed = eventually(WAIT, || async {
        let published: i32 = sqlx::query_scalar(
            "SELECT published_sms FROM comms.incident_notices WHERE incident_id = $1",
        )
        .bind(id)
        .fetch_one(f.pool())
        .await
        .expect("progress");
        published >= 200
    })
    .await;
    assert!(progressed);
    f.kill_process();
    let state = f.notice_state(id, 1).await;
    assert_eq!(state.as_deref(), Some("approved"), "killed mid fan-out");
    f.spawn_process();
    assert!(f.wait_notice(id, 1, "done").await);
    // 5,000 sends through the sandbox on a shared 2-core machine: a generous bound.
    let bound = WAIT * 3;
    let sent = eventually(bound, || async { f.notices(id, "sent").await == 5001 }).await;
    let states: Vec<(String, i64)> = sqlx::query_as(
        "SELECT delivery_state, count(*) FROM comms.messages WHERE record_id = $1 GROUP BY 1",
    )
    .bind(id)
    .fetch_all(f.pool())
    .await
    .expect("states");
    assert!(sent, "every notice sent once: {states:?}");
    let per_contact: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM comms.messages WHERE record_id = $1 GROUP BY contact_id, channel",
    )
    .bind(id)
    .fetch_all(f.pool())
    .await
    .expect("per contact");
    assert!(per_contact.iter().all(|n| *n == 1));
    let at_provider = f.fleet.sandbox().messages().await.expect("sandbox").len();
    assert_eq!(
        at_provider, 5000,
        "one SMS or email per contact and channel at the provider"
    );
    f.stop().await;
}
