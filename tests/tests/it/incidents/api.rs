//! The incident admin API over real HTTP: `oncall` keys declare, verify and resolve; only
//! `owner` keys resume automation, for the owner or a delegate; refusals are clear.

use comms_domain::api_keys::{self, Role};
use comms_domain::approvals::Decision;
use comms_domain::pause::Scope;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::eventually;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use uuid::Uuid;

use super::setup::{IncidentFleet, WAIT};

#[tokio::test]
async fn oncall_declares_verifies_and_resolves_and_only_the_owner_resumes_over_http() {
    let f = IncidentFleet::start(&[]).await;
    let (client, _) = f.client("Acme", 1, "express").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/v1/incidents",
        listener.local_addr().expect("address")
    );
    let shutdown = Shutdown::new();
    let runtime = Runtime::new(f.fleet.env.settings.clone(), f.pool().clone());
    let gateway = tokio::spawn(comms_gateway::serve(listener, runtime, shutdown.clone()));
    let pool = f.pool();
    let oncall = api_keys::create(pool, "pager", Role::Oncall)
        .await
        .expect("key");
    let owner = api_keys::create(pool, "dashboard", Role::Owner)
        .await
        .expect("key");
    let enqueue = api_keys::create(pool, "crm", Role::Enqueue)
        .await
        .expect("key");
    let http = reqwest::Client::new();
    let post = |path: String, key: &str, body: Value| {
        http.post(format!("{url}{path}"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let id = Uuid::new_v4();
    let declaration = json!({
        "incident_id": id, "title": "Outage", "severity": "major", "owner": "ana",
        "affected": {"clients": [client]}, "facts_verified": false,
        "template": {"name": "incident-notice", "vars": {"what": "tracking is delayed"}},
    });

    let wrong_role = post(String::new(), &enqueue.key, declaration.clone())
        .await
        .expect("answers");
    assert_eq!(wrong_role.status(), 403, "an enqueue key may not declare");
    let mut nobody = declaration.clone();
    nobody["affected"] = json!({});
    let refused = post(String::new(), &oncall.key, nobody)
        .await
        .expect("answers");
    assert_eq!(refused.status(), 422);
    let refusal: Value = refused.json().await.expect("json");
    assert_eq!(refusal["reason"], "invalid_event", "{refusal}");
    // A client the fleet does not know is refused here, not accepted and dead-lettered later.
    let stranger = Uuid::new_v4();
    let mut unknown = declaration.clone();
    unknown["affected"] = json!({"clients": [stranger]});
    let refused = post(String::new(), &oncall.key, unknown)
        .await
        .expect("answers");
    assert_eq!(refused.status(), 422);
    let refusal: Value = refused.json().await.expect("json");
    assert_eq!(refusal["reason"], "unknown_affected", "{refusal}");
    let message = refusal["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("client {stranger}")), "{refusal}");

    let declared = post(String::new(), &oncall.key, declaration.clone())
        .await
        .expect("answers");
    assert_eq!(declared.status(), 202);
    let declared: Value = declared.json().await.expect("json");
    assert_eq!(declared["routing_key"], "incident.declared");
    let paused = || async {
        f.fleet
            .switch
            .active()
            .iter()
            .any(|p| p.scope == Scope::Client(client) && p.incident == Some(id))
    };
    assert!(eventually(WAIT, paused).await, "the client is paused");
    // Declared once: declaring the same id again is refused (its next event is an update).
    let twice = post(String::new(), &oncall.key, declaration)
        .await
        .expect("answers");
    assert_eq!(twice.status(), 409);
    let twice: Value = twice.json().await.expect("json");
    assert_eq!(twice["reason"], "incident_exists", "{twice}");

    let resume = format!("/{id}/resume-automation");
    let by_oncall = post(resume.clone(), &oncall.key, json!({"by": "ana"}))
        .await
        .expect("answers");
    assert_eq!(by_oncall.status(), 403, "resuming is the owner's decision");
    let early = post(resume.clone(), &owner.key, json!({"by": "ana"}))
        .await
        .expect("answers");
    assert_eq!(early.status(), 409, "facts not verified yet");

    let verified = post(format!("/{id}/verify"), &oncall.key, json!({}))
        .await
        .expect("answers");
    assert_eq!(verified.status(), 202);
    assert!(f.wait_notice(id, 2, "awaiting_approval").await);
    assert!(paused().await, "verifying does not lift the pause");
    f.decide_proof(id, 2, Decision::Approve).await;

    let stranger = post(resume.clone(), &owner.key, json!({"by": "bo"}))
        .await
        .expect("answers");
    assert_eq!(stranger.status(), 403);
    let stranger: Value = stranger.json().await.expect("json");
    assert_eq!(stranger["reason"], "not_owner_or_delegate");
    let resumed = post(resume, &owner.key, json!({"by": "ana"}))
        .await
        .expect("answers");
    assert_eq!(resumed.status(), 200);
    let resumed: Value = resumed.json().await.expect("json");
    assert_eq!(resumed["resumed"]["clients"], json!([client]));
    let lifted = eventually(WAIT, || async { !paused().await }).await;
    assert!(lifted, "the owner's decision lifts the pause");

    let resolved = post(
        format!("/{id}/resolve"),
        &oncall.key,
        json!({"vars": {"what": "fixed"}}),
    )
    .await
    .expect("answers");
    assert_eq!(resolved.status(), 202);
    let shown = eventually(WAIT, || async {
        let shown: Value = http
            .get(format!("{url}/{id}"))
            .bearer_auth(&oncall.key)
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        shown["incident"]["state"] == "resolved"
    })
    .await;
    assert!(shown, "show reports the resolution");
    let late = post(
        format!("/{id}/update"),
        &oncall.key,
        json!({"severity": "minor"}),
    )
    .await
    .expect("answers");
    assert_eq!(late.status(), 409);
    let listed: Value = http
        .get(&url)
        .bearer_auth(&oncall.key)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["incidents"][0]["id"], json!(id));
    let unknown = http
        .get(format!("{url}/{}", Uuid::new_v4()))
        .bearer_auth(&oncall.key)
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);

    shutdown.cancel();
    gateway.await.expect("join").expect("gateway");
    f.stop().await;
}
