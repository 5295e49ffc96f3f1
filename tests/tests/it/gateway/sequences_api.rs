//! `POST /v1/enrolments` and `POST /v1/outcomes`: `enqueue` keys only, 201 then 200 (a no-op) for
//! the same enrolment or outcome, 422 with the reason for a bad one.

use comms_domain::api_keys::{self, Role};
use comms_domain::sequences::{definition::Definition, store};
use serde_json::json;
use uuid::Uuid;

use super::Gateway;

async fn post(
    gw: &Gateway,
    path: &str,
    auth: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = gw
        .http
        .post(format!("{}{path}", gw.url))
        .header("authorization", auth)
        .json(body)
        .send()
        .await
        .expect("gateway answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn enrolments_and_outcomes_over_http_are_idempotent_and_refused_with_a_reason() {
    let gw = Gateway::start(&[]).await;
    let pool = &gw.env.pool;
    sqlx::query(
        "INSERT INTO comms.templates (name, version, channel, body, state, created_by, approved_by, approved_at)
         VALUES ('intro', 1, 'sms', 'Hi', 'approved', 't', 'ana', now())",
    )
    .execute(pool)
    .await
    .expect("template");
    let client: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.clients (name, owner) VALUES ('Acme', 'ana') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("client");
    let contact: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.contacts (name, client_id) VALUES ('Dana', $1) RETURNING id",
    )
    .bind(client)
    .fetch_one(pool)
    .await
    .expect("contact");
    let definition = Definition::parse(
        json!({
            "name": "checkin", "audience": "client_contacts", "escalation_owner": "ana",
            "rollback": { "cancel_remaining": true },
            "steps": [{ "channel": "sms", "template": "intro@1", "after": "1d" }]
        })
        .to_string()
        .as_bytes(),
    )
    .expect("definition");
    let version = store::add(pool, &definition, "ana").await.expect("added");
    store::activate(pool, ("checkin", version), "ana", chrono::Utc::now())
        .await
        .expect("active");

    let enqueue = format!(
        "Bearer {}",
        api_keys::create(pool, "crm", Role::Enqueue)
            .await
            .expect("key")
            .key
    );
    let oncall = format!(
        "Bearer {}",
        api_keys::create(pool, "pager", Role::Oncall)
            .await
            .expect("key")
            .key
    );
    let enrolment = json!({
        "contact_id": contact, "sequence": "checkin",
        "record": { "type": "client", "id": client }, "owner": "ana", "source": "crm"
    });
    assert_eq!(
        post(&gw, "/v1/enrolments", &oncall, &enrolment).await.0,
        403
    );
    let (status, first) = post(&gw, "/v1/enrolments", &enqueue, &enrolment).await;
    assert_eq!(
        (status, first["created"].clone()),
        (201, json!(true)),
        "{first}"
    );
    let (status, again) = post(&gw, "/v1/enrolments", &enqueue, &enrolment).await;
    assert_eq!(status, 200);
    assert_eq!(again["enrolment_id"], first["enrolment_id"]);
    let mut unknown = enrolment.clone();
    unknown["sequence"] = json!("nothing");
    let (status, body) = post(&gw, "/v1/enrolments", &enqueue, &unknown).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (422, json!("sequence_not_active")),
        "{body}"
    );
    let mut stray = enrolment.clone();
    stray["extra"] = json!(1);
    let (status, body) = post(&gw, "/v1/enrolments", &enqueue, &stray).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (422, json!("invalid_enrolment")),
        "{body}"
    );
    // A value of the wrong shape is refused naming its field.
    let mut malformed = enrolment.clone();
    malformed["contact_id"] = json!("x");
    let (status, body) = post(&gw, "/v1/enrolments", &enqueue, &malformed).await;
    let message = body["message"].as_str().unwrap_or_default();
    assert_eq!(status, 422, "{body}");
    assert!(message.starts_with("contact_id: "), "{body}");
    // Anything after the object is refused too, not silently dropped.
    let trailing = gw
        .http
        .post(format!("{}/v1/enrolments", gw.url))
        .header("authorization", &enqueue)
        .header("content-type", "application/json")
        .body(format!("{enrolment} {{}}"))
        .send()
        .await
        .expect("post");
    assert_eq!(trailing.status(), 422);

    let outcome = json!({
        "outcome_id": "crm-1", "type": "booked", "source": "crm",
        "booked": { "kind": "meeting" },
        "attributed_to": { "enrolment": first["enrolment_id"] }
    });
    let (status, recorded) = post(&gw, "/v1/outcomes", &enqueue, &outcome).await;
    assert_eq!(status, 201, "{recorded}");
    assert_eq!(recorded["exited"], json!([first["enrolment_id"]]));
    assert_eq!(post(&gw, "/v1/outcomes", &enqueue, &outcome).await.0, 200);
    let mut reused = outcome.clone();
    reused["booked"]["kind"] = json!("sale");
    let (status, body) = post(&gw, "/v1/outcomes", &enqueue, &reused).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (409, json!("outcome_id_reused"))
    );
    let viewed = json!({ "outcome_id": "v-1", "type": "report_viewed", "source": "portal",
                         "attributed_to": { "record": { "type": "client", "id": client } } });
    let (status, body) = post(&gw, "/v1/outcomes", &enqueue, &viewed).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (422, json!("report_viewed_not_accepted"))
    );
    gw.stop().await;
}
