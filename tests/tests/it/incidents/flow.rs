//! The pause rule, the owner's decisions, replays and the portal view.

use comms_domain::approvals::Decision;
use comms_domain::pause::Scope;
use comms_domain::pause::store::{self as pause_store, PauseError};
use comms_tests::eventually;
use comms_tests::fleet::sms_request;
use serde_json::json;
use uuid::Uuid;

use super::setup::{IncidentFleet, WAIT, incident};

#[tokio::test]
async fn unverified_facts_pause_the_clients_until_the_owner_resumes_and_the_notice_passes_its_own_pause()
 {
    let f = IncidentFleet::start(&[]).await;
    let (client, contacts) = f.client("Acme", 2, "express").await;
    let id = Uuid::new_v4();

    f.event("incident.declared", &incident(id, 1, false, &[client]))
        .await;
    // The client is paused by the incident, with a reason naming it; the owner has a task.
    let paused = f.client_paused(client).await;
    assert!(paused, "the affected client is paused");
    let (reason, actor, by): (String, String, Option<Uuid>) = sqlx::query_as(
        "SELECT reason, actor, incident_id FROM comms.pauses WHERE scope = 'client' AND scope_value = $1",
    )
    .bind(client.to_string())
    .fetch_one(f.pool())
    .await
    .expect("pause");
    assert!(reason.contains(&id.to_string()), "{reason}");
    assert_eq!((actor.as_str(), by), ("comms-incidents", Some(id)));
    // The worker opens the task right after pausing the clients: wait for it, bounded.
    let task = eventually(WAIT, || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM comms.tasks WHERE owner = 'ana' AND state = 'open' AND title = $1",
        )
        .bind(format!("verify the facts of incident {id}"))
        .fetch_one(f.pool())
        .await
        .expect("task");
        open == 1
    })
    .await;
    assert!(task, "the owner is asked to verify the facts");

    // An automated outreach send to the client is held.
    let mut outreach = sms_request("outreach-1", "+14150000001", client);
    outreach["kind"] = json!("transactional");
    outreach["recipient"] = json!({"contact_id": contacts[0]});
    outreach["template"] =
        json!({"name": "incident-notice.sms", "vars": {"what": "hello", "severity": "x"}});
    f.fleet.send(&outreach).await;
    assert!(
        f.fleet.reaches("outreach-1", "held").await,
        "the client's send is held"
    );
    assert_eq!(
        f.notices(id, "sent").await + f.notices(id, "awaiting_approval").await,
        0,
        "no notice while unverified"
    );

    // Verified: the pause stays; the first notice waits for the owner's approval.
    f.event("incident.updated", &incident(id, 2, true, &[client]))
        .await;
    assert!(f.wait_notice(id, 2, "awaiting_approval").await);
    f.decide_proof(id, 2, Decision::Approve).await;
    assert!(
        f.wait_notice(id, 2, "done").await,
        "the approved notice is fanned out"
    );
    // Two contacts on SMS and email, one portal update for the client; all past the pause.
    let sent = eventually(WAIT, || async { f.notices(id, "sent").await == 5 }).await;
    assert!(
        sent,
        "every notice went out through the pause its incident caused"
    );
    assert!(
        f.fleet
            .switch
            .active()
            .iter()
            .any(|p| p.scope == Scope::Client(client)),
        "the verified update did not lift the pause"
    );
    assert_eq!(f.fleet.state("outreach-1").await.as_deref(), Some("held"));

    // An ordinary resume of the client (on-call's `commsctl resume`, the API, the console) does
    // not lift it: it names the incident and leaves the pause where it is.
    let ordinary = pause_store::resume(f.pool(), &Scope::Client(client), "override", "olu").await;
    match ordinary {
        Err(PauseError::HeldByIncident { incident, .. }) => assert_eq!(incident, id),
        other => panic!("an ordinary resume lifted an incident's pause: {other:?}"),
    }
    assert!(
        f.client_paused(client).await,
        "still paused by the incident"
    );

    // The owner's recorded decision lifts it; the held send goes out once.
    let refused = comms_incidents::ops::resume_automation(f.pool(), id, "bo").await;
    assert!(refused.is_err(), "only the owner (or a delegate) decides");
    let resumed = comms_incidents::ops::resume_automation(f.pool(), id, "ana")
        .await
        .expect("resume");
    assert_eq!(resumed.clients, vec![client]);
    assert!(
        f.fleet.reaches("outreach-1", "sent").await,
        "the held send is released"
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.pause_events WHERE action = 'resume' AND actor = 'ana' AND scope_value = $1",
    )
    .bind(client.to_string())
    .fetch_one(f.pool())
    .await
    .expect("audit");
    assert_eq!(audited, 1, "the decision is audited like any pause");
    let sandbox = f.fleet.sandbox().messages().await.expect("sandbox");
    let to_outreach = sandbox.iter().filter(|m| m.body.contains("hello")).count();
    assert_eq!(to_outreach, 1, "released once");

    // The portal role sees the approved, client-safe update and nothing internal.
    let mut portal = f.portal().await;
    let visible: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT to_jsonb(v) FROM portal.incident_notices v")
            .fetch_all(&mut portal)
            .await
            .expect("portal view");
    assert!(!visible.is_empty(), "the portal shows the notice");
    let text = serde_json::to_string(&visible).expect("json");
    assert!(text.contains("conversion tracking is delayed"), "{text}");
    for secret in ["db-7", "replica lag", "4411", "Tracking pixel outage"] {
        assert!(!text.contains(secret), "the portal sees {secret}: {text}");
    }
    assert!(
        sqlx::query("SELECT * FROM internal.incident_notes")
            .fetch_all(&mut portal)
            .await
            .is_err(),
        "internal notes are refused to the portal role"
    );
    f.stop().await;
}

#[tokio::test]
async fn rejecting_the_first_notice_sends_nothing() {
    let f = IncidentFleet::start(&[]).await;
    let (client, _) = f.client("Acme", 3, "implied").await;
    let id = Uuid::new_v4();
    f.event("incident.declared", &incident(id, 1, true, &[client]))
        .await;
    assert!(f.wait_notice(id, 1, "awaiting_approval").await);
    f.decide_proof(
        id,
        1,
        Decision::Reject {
            reason: "wrong scope".into(),
        },
    )
    .await;
    assert!(f.wait_notice(id, 1, "rejected").await);
    // A rejected notice is final: the fan-out only takes approved ones.
    assert_eq!(f.notices(id, "sent").await, 0);
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM comms.messages WHERE record_id = $1")
            .bind(id)
            .fetch_one(f.pool())
            .await
            .expect("count");
    assert_eq!(recorded, 1, "only the proof was ever asked for");
    assert!(
        f.fleet
            .sandbox()
            .messages()
            .await
            .expect("sandbox")
            .is_empty()
    );
    f.stop().await;
}

#[tokio::test]
async fn a_replayed_or_older_event_changes_nothing() {
    // One event at a time, so a later marker event proves the earlier ones were taken.
    let f = IncidentFleet::start(&[("COMMS__CONSUMER__CONCURRENCY", "1")]).await;
    let (client, _) = f.client("Acme", 1, "implied").await;
    let (other, _) = f.client("Beta", 1, "implied").await;
    let id = Uuid::new_v4();
    f.event("incident.declared", &incident(id, 1, false, &[client]))
        .await;
    f.event("incident.updated", &incident(id, 3, false, &[client]))
        .await;
    let applied = eventually(WAIT, || async {
        sqlx::query_scalar::<_, i64>("SELECT sequence FROM comms.incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(f.pool())
            .await
            .expect("incident")
            == Some(3)
    })
    .await;
    assert!(applied);
    let snapshot = || async {
        sqlx::query_scalar::<_, serde_json::Value>(
            "SELECT jsonb_build_object(
                'incident', (SELECT to_jsonb(i) FROM comms.incidents i WHERE id = $1),
                'events', (SELECT count(*) FROM comms.incident_events WHERE incident_id = $1),
                'clients', (SELECT jsonb_agg(client_id) FROM comms.incident_clients WHERE incident_id = $1),
                'notices', (SELECT count(*) FROM comms.incident_notices WHERE incident_id = $1),
                'pauses', (SELECT count(*) FROM comms.pauses),
                'tasks', (SELECT count(*) FROM comms.tasks),
                'log', (SELECT count(*) FROM comms.incident_log WHERE incident_id = $1))",
        )
        .bind(id)
        .fetch_one(f.pool())
        .await
        .expect("snapshot")
    };
    let before = snapshot().await;
    // An older sequence that would verify the facts and add a client, then a replay of 3.
    let mut older = incident(id, 2, true, &[client, other]);
    older["title"] = json!("older title");
    f.event("incident.updated", &older).await;
    f.event("incident.updated", &incident(id, 3, false, &[client]))
        .await;
    // A marker event on another incident: once it is applied, the two before it were taken.
    let marker = Uuid::new_v4();
    f.event("incident.declared", &incident(marker, 1, false, &[other]))
        .await;
    // Applied in full: its owner task is the last thing the worker writes for it.
    let taken = eventually(WAIT, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM comms.tasks WHERE title = $1")
            .bind(format!("verify the facts of incident {marker}"))
            .fetch_one(f.pool())
            .await
            .expect("marker")
            == 1
    })
    .await;
    assert!(taken);
    let after = snapshot().await;
    // Only the marker's own pause and task differ.
    let mut expected = before.clone();
    expected["pauses"] = json!(before["pauses"].as_i64().expect("n") + 1);
    expected["tasks"] = json!(before["tasks"].as_i64().expect("n") + 1);
    assert_eq!(after, expected);
    f.stop().await;
}
