//! The owner's admin API on the gateway: owner keys only, the same owner-or-delegate rule as
//! `commsctl`, clear refusals, and an approved message goes out through the sender.

use comms_domain::api_keys::{self, Role};
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{decisions, fleet, request, sent_count};

#[tokio::test]
async fn owners_decide_through_the_admin_api() {
    let fleet = fleet(&[]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let shutdown = Shutdown::new();
    let runtime = Runtime::new(fleet.env.settings.clone(), fleet.env.pool.clone());
    let gateway = tokio::spawn(comms_gateway::serve(listener, runtime, shutdown.clone()));
    let owner = api_keys::create(&fleet.env.pool, "dashboard", Role::Owner)
        .await
        .expect("key");
    let enqueue = api_keys::create(&fleet.env.pool, "crm", Role::Enqueue)
        .await
        .expect("key");
    let http = reqwest::Client::new();
    for (key, kind) in [("api-1", "incident_notice"), ("api-2", "report_digest")] {
        fleet.send(&request(key, kind, &fleet)).await;
        assert!(fleet.reaches(key, "awaiting_approval").await);
    }
    let post = |path: &str, body: Value| {
        http.post(format!("{url}/v1/approvals/{path}"))
            .bearer_auth(&owner.key)
            .json(&body)
            .send()
    };

    let list = format!("{url}/v1/approvals");
    let no_key = http.get(&list).send().await.expect("answers");
    assert_eq!(no_key.status(), 401);
    let wrong_role = http
        .get(&list)
        .bearer_auth(&enqueue.key)
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong_role.status(), 403, "an enqueue key may not decide");
    let listed: Value = http
        .get(format!("{list}?owner=ana"))
        .bearer_auth(&owner.key)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let waiting = listed["waiting"].as_array().expect("waiting");
    assert_eq!(waiting.len(), 2);
    assert_eq!(waiting[0]["owner"], json!("ana"));
    assert_eq!(waiting[0]["waits_for"], json!("approval"));

    let stranger = post("api-1/approve", json!({ "decided_by": "bo" }))
        .await
        .expect("answers");
    assert_eq!(stranger.status(), 403);
    let refusal: Value = stranger.json().await.expect("json");
    assert_eq!(refusal["reason"], json!("not_owner_or_delegate"));
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.contains("owned by ana"))
    );
    let nobody = post("api-1/approve", json!({})).await.expect("answers");
    assert_eq!(nobody.status(), 422, "the deciding person must be named");
    let unknown = post("no-such-message/approve", json!({ "decided_by": "ana" }))
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);

    let approved = post("api-1/approve", json!({ "decided_by": "ana" }))
        .await
        .expect("answers");
    assert_eq!(approved.status(), 200);
    let approved: Value = approved.json().await.expect("json");
    assert_eq!(approved["decision"], json!("approved"));
    assert_eq!(approved["handed_to_sender"], json!(true));
    assert!(fleet.reaches("api-1", "sent").await);
    assert_eq!(sent_count(&fleet).await, 1);
    let again = post("api-1/approve", json!({ "decided_by": "ana" }))
        .await
        .expect("answers");
    assert_eq!(again.status(), 409, "nothing is left to decide");

    let no_reason = post("api-2/reject", json!({ "decided_by": "ana" }))
        .await
        .expect("answers");
    assert_eq!(no_reason.status(), 422);
    let rejected = post(
        "api-2/reject",
        json!({ "decided_by": "ana", "reason": "stale figures" }),
    )
    .await
    .expect("answers");
    assert_eq!(rejected.status(), 200);
    assert_eq!(fleet.state("api-2").await.as_deref(), Some("blocked"));
    assert_eq!(
        decisions(&fleet, "api-2").await[0].reason.as_deref(),
        Some("stale figures")
    );

    shutdown.cancel();
    gateway.await.expect("gateway task").expect("gateway stops");
    fleet.stop().await;
}
