//! The dead-letter admin API over real HTTP: `oncall` keys list, show, replay and purge with the
//! same rules as `commsctl dead`; other keys are refused; a replay or purge needs a reason and is
//! audited with the person and the key.

use comms_domain::api_keys::{self, Role};
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{assert_masked, fleet_with_dead_letters};

#[tokio::test]
async fn oncall_keys_list_show_replay_and_purge_dead_letters_over_http() {
    let (fleet, _) = fleet_with_dead_letters().await;
    let pool = &fleet.env.pool;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1/dead", listener.local_addr().expect("address"));
    let shutdown = Shutdown::new();
    let runtime = Runtime::new(fleet.env.settings.clone(), pool.clone());
    let gateway = tokio::spawn(comms_gateway::serve(listener, runtime, shutdown.clone()));
    let oncall = api_keys::create(pool, "pager", Role::Oncall)
        .await
        .expect("key");
    let enqueue = api_keys::create(pool, "crm", Role::Enqueue)
        .await
        .expect("key");
    let http = reqwest::Client::new();

    let refused = http
        .get(&url)
        .bearer_auth(&enqueue.key)
        .send()
        .await
        .expect("answers");
    assert_eq!(
        refused.status(),
        403,
        "an enqueue key may not read dead letters"
    );

    let listed = http
        .get(format!("{url}?reason=contact_id"))
        .bearer_auth(&oncall.key)
        .send()
        .await
        .expect("answers");
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.expect("json");
    let dead = listed["dead"].as_array().expect("a list");
    assert_eq!(dead.len(), 1, "{listed}");
    let id = dead[0]["id"].as_i64().expect("id");
    assert_eq!(
        dead[0]["queue"],
        json!(fleet.env.topology.send_queue("sms").name)
    );
    for path in [String::new(), format!("/{id}")] {
        let answer = http
            .get(format!("{url}{path}"))
            .bearer_auth(&oncall.key)
            .send()
            .await
            .expect("answers");
        assert_eq!(answer.status(), 200, "GET /v1/dead{path}");
        let text = answer.text().await.expect("body");
        assert_masked(&text);
        assert!(text.contains(&format!("\"id\":{id}")), "{text}");
    }

    let post = |path: &str, body: Value| {
        http.post(format!("{url}/{path}"))
            .bearer_auth(&oncall.key)
            .json(&body)
            .send()
    };
    let unexplained = post("replay", json!({ "id": id })).await.expect("answers");
    assert_eq!(unexplained.status(), 422, "a replay needs a reason");
    let dry = post(
        "replay",
        json!({ "id": id, "dry_run": true, "rate": "5/s", "reason": "look first" }),
    )
    .await
    .expect("answers");
    assert_eq!(dry.status(), 200);
    let dry: Value = dry.json().await.expect("json");
    assert_eq!(
        (dry["done"].clone(), dry["action_id"].clone()),
        (json!(1), Value::Null)
    );
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM internal.dead_letter_actions")
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(audited, 0, "a dry run is not an action");

    let purged = post(
        "purge",
        json!({ "reason_contains": "owner", "reason": "producer fixed", "actor": "pat" }),
    )
    .await
    .expect("answers");
    assert_eq!(purged.status(), 200);
    let purged: Value = purged.json().await.expect("json");
    assert_eq!(purged["done"], json!(1), "{purged}");
    let (actor, reason): (String, String) = sqlx::query_as(
        "SELECT actor, reason FROM internal.dead_letter_actions WHERE action = 'purge'",
    )
    .fetch_one(pool)
    .await
    .expect("audit");
    assert_eq!(
        (actor.as_str(), reason.as_str()),
        ("pat (key pager)", "producer fixed")
    );

    shutdown.cancel();
    let _ = gateway.await;
    fleet.stop().await;
}
