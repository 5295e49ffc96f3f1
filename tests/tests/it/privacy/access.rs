//! Who read what: full addresses are masked by default, a reveal (commsctl or the admin API) is
//! recorded with who, what, when and why, `commsctl audit access` lists it, and only `owner` keys
//! may reveal or erase over HTTP.

use clap::Parser;
use comms_domain::api_keys::{self, Role};
use comms_domain::privacy::access::{self, AccessFilter};
use comms_domain::timeline;
use serde_json::json;
use uuid::Uuid;

use crate::gateway::Gateway;

const PHONE: &str = "+14155552671";

async fn key(gw: &Gateway, name: &str, role: Role) -> String {
    let created = api_keys::create(&gw.env.pool, name, role)
        .await
        .expect("key");
    format!("Bearer {}", created.key)
}

async fn recorded(gw: &Gateway) -> Vec<access::AccessEntry> {
    let filter = AccessFilter {
        limit: 100,
        ..AccessFilter::default()
    };
    access::list(&gw.env.pool, &filter)
        .await
        .expect("access log")
}

/// A delivered message to +14155552671 and its contact.
async fn delivered(gw: &Gateway) -> (Uuid, Uuid) {
    let pool = &gw.env.pool;
    let message = crate::upstream::recorded(pool, "dana-1", "crm", "delivered").await;
    let contact = sqlx::query_scalar("SELECT contact_id FROM comms.messages WHERE id = $1")
        .bind(message)
        .fetch_one(pool)
        .await
        .expect("contact");
    (message, contact)
}

#[tokio::test]
async fn full_addresses_are_masked_and_every_reveal_is_recorded() {
    let gw = Gateway::start(&[]).await;
    let pool = &gw.env.pool;
    let (message, contact) = delivered(&gw).await;

    // Masked by default, and reading masked data records nothing.
    let view = timeline::view(pool, "dana-1")
        .await
        .expect("view")
        .expect("found");
    assert_eq!(view.recipient, "+1••••••••71");
    let plain = commsctl::Cli::parse_from(["commsctl", "message", "dana-1"]);
    commsctl::run_with(plain, &gw.env.settings)
        .await
        .expect("message");
    assert!(recorded(&gw).await.is_empty());
    let no_flag = commsctl::Cli::try_parse_from(["commsctl", "message", "dana-1", "--why", "x"]);
    assert!(no_flag.is_err(), "--why means nothing without --reveal");

    // commsctl message --reveal: recorded with who and why.
    let reveal = commsctl::Cli::parse_from([
        "commsctl",
        "message",
        "dana-1",
        "--reveal",
        "--why",
        "ticket 12",
        "--as",
        "maria",
    ]);
    commsctl::run_with(reveal, &gw.env.settings)
        .await
        .expect("reveal");
    let log = recorded(&gw).await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        (
            log[0].who.as_str(),
            log[0].via.as_str(),
            log[0].why.as_deref()
        ),
        ("maria", "commsctl", Some("ticket 12"))
    );
    assert_eq!(
        (log[0].message_id, log[0].contact_id),
        (Some(message), Some(contact))
    );

    // The admin API: owner keys only, and recorded under the key's name.
    let owner = key(&gw, "privacy-desk", Role::Owner).await;
    let oncall = key(&gw, "pagerduty", Role::Oncall).await;
    let url = format!("{}/v1/messages/dana-1/reveal?why=complaint", gw.url);
    let refused = gw
        .http
        .get(&url)
        .header("authorization", &oncall)
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 403);
    let answer = gw
        .http
        .get(&url)
        .header("authorization", &owner)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(body["revealed"]["recipient_address"], PHONE);
    assert_eq!(body["revealed"]["body"], "Hello Dana, your code is 4711");
    let log = recorded(&gw).await;
    assert_eq!(log.len(), 2, "the refused call read nothing");
    assert_eq!(
        (
            log[0].who.as_str(),
            log[0].via.as_str(),
            log[0].why.as_deref()
        ),
        ("privacy-desk", "admin_api", Some("complaint"))
    );
    // The log holds references, never the address read.
    let text: String =
        sqlx::query_scalar("SELECT string_agg(a::text, ' ') FROM comms.access_log a")
            .fetch_one(pool)
            .await
            .expect("log text");
    assert!(!text.contains(PHONE));

    // commsctl audit access, filtered.
    let audit = commsctl::Cli::parse_from([
        "commsctl", "audit", "access", "--who", "maria", "--since", "1h",
    ]);
    commsctl::run_with(audit, &gw.env.settings)
        .await
        .expect("audit access");
    let by_contact = access::list(
        pool,
        &AccessFilter {
            contact: Some(contact),
            limit: 10,
            ..AccessFilter::default()
        },
    )
    .await
    .expect("by contact");
    assert_eq!(by_contact.len(), 2);
    let listed = gw
        .http
        .get(format!("{}/v1/audit/access?who=maria", gw.url))
        .header("authorization", &owner)
        .send()
        .await
        .expect("answer");
    let listed: serde_json::Value = listed.json().await.expect("json");
    assert_eq!(listed["access"].as_array().map(Vec::len), Some(1));
    gw.stop().await;
}

#[tokio::test]
async fn owners_erase_through_the_admin_api_with_a_reason() {
    let gw = Gateway::start(&[]).await;
    let pool = &gw.env.pool;
    let (message, contact) = delivered(&gw).await;
    let owner = key(&gw, "privacy-desk", Role::Owner).await;
    let enqueue = key(&gw, "crm", Role::Enqueue).await;
    let url = format!("{}/v1/contacts/forget", gw.url);
    let post = |auth: String, body: serde_json::Value| {
        let request = gw.http.post(&url).header("authorization", auth).json(&body);
        async move { request.send().await.expect("answer") }
    };
    let body = json!({ "contact_id": contact, "reason": "erasure request #9", "by": "maria" });
    assert_eq!(post(enqueue, body.clone()).await.status(), 403);
    let no_reason = json!({ "contact_id": contact });
    assert_eq!(post(owner.clone(), no_reason).await.status(), 422);
    let typo = json!({ "phone": "4155552671", "reason": "erasure request #9", "by": "maria" });
    let refused = post(owner.clone(), typo).await;
    assert_eq!(refused.status(), 422);
    let refused: serde_json::Value = refused.json().await.expect("json");
    let why = refused["message"].as_str().unwrap_or_default();
    assert!(why.starts_with("phone: expected E.164"), "{refused}");
    let answer = post(owner.clone(), body).await;
    assert_eq!(answer.status(), 200);
    let erased: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(erased["erasure"]["counts"]["messages"], 1);
    let (by, address): (String, String) = sqlx::query_as(
        "SELECT e.erased_by, m.recipient_address FROM comms.erasures e, comms.messages m WHERE m.id = $1",
    )
    .bind(message)
    .fetch_one(pool)
    .await
    .expect("erased");
    assert_eq!(
        (by.as_str(), address.as_str()),
        ("maria (key privacy-desk)", "removed")
    );
    assert_eq!(super::tables_holding(pool, PHONE).await, []);
    gw.stop().await;
}
