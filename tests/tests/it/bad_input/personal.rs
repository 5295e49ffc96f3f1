//! Personal data fed through every refusal path of the send request, over AMQP and over HTTP:
//! none of it may appear in a log line, in `internal.rejected_input.reason`, in the dead
//! letter's `x-comms-reason` or in the API's answer. Each refusal still names its field.

use comms_domain::api_keys::{self, Role};
use comms_domain::contract::MAX_PAYLOAD_BYTES;
use comms_tests::fleet::{SendFleet, sms_request};
use comms_tests::logs::Captured;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{dead, rejected_reach};
use crate::gateway::Gateway;

const PHONE: &str = "+14155552671";
const EMAIL: &str = "ana.lopez@example.org";
const NAME: &str = "Ana Lopez";
/// What must never be found: the number's digits, the mailbox, the surname.
const PERSONAL: [&str; 3] = ["4155552671", "ana.lopez", "Lopez"];

fn assert_clean(what: &str, text: &str) {
    for personal in PERSONAL {
        assert!(
            !text.contains(personal),
            "{what} contains `{personal}`: {text}"
        );
    }
}

/// Every way a send request is refused, each carrying personal data where the refused value
/// is: (field the refusal must name, routing key, body).
fn refusals(client: Uuid) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let base = || sms_request("pii", PHONE, client);
    let with = |path: &[&str], value: Value| {
        let mut request = base();
        let (last, parents) = path.split_last().expect("a path");
        let node = parents
            .iter()
            .fold(&mut request, |node, key| &mut node[*key]);
        node[*last] = value;
        request
    };
    let contact = json!({ "contact_id": Uuid::new_v4().to_string(), "name": NAME });
    let values: Vec<(&str, Value)> = vec![
        ("recipient", with(&["recipient"], json!(PHONE))),
        (
            "recipient.phone",
            with(&["recipient", "phone"], json!("4155552671")),
        ),
        (
            "recipient.phone",
            with(&["recipient", "phone"], json!(format!("{PHONE}99999"))),
        ),
        (
            "recipient.phone",
            with(&["recipient", "phone"], json!(["+1", "4155552671"])),
        ),
        (
            "recipient",
            with(&["recipient"], json!({ "email": EMAIL, "name": NAME })),
        ),
        ("recipient.name", with(&["recipient"], contact)),
        (
            "recipient.name",
            with(&["recipient", "name"], json!(NAME.repeat(30))),
        ),
        ("recipient.name", with(&["recipient", "name"], json!(42))),
        (
            "recipient.time_zone",
            with(&["recipient", "time_zone"], json!(NAME)),
        ),
        (
            "recipient.mobile",
            with(&["recipient", "mobile"], json!(PHONE)),
        ),
        ("channel", with(&["channel"], json!(PHONE))),
        ("kind", with(&["kind"], json!(EMAIL))),
        ("schema", with(&["schema"], json!(NAME))),
        (
            "note",
            with(&["note"], json!(format!("{NAME} {PHONE} {EMAIL}"))),
        ),
        ("owner", with(&["owner"], json!([NAME]))),
        ("owner", with(&["owner"], json!(format!("{NAME}\u{0}")))),
        (
            "template.vars.name",
            with(&["template", "vars", "name"], json!(format!("{NAME}\u{0}"))),
        ),
        ("template.name", with(&["template", "name"], json!(NAME))),
        (
            "template.version",
            with(&["template", "version"], json!(PHONE)),
        ),
        ("template.vars", with(&["template", "vars"], json!(NAME))),
        ("record.id", with(&["record", "id"], json!(PHONE))),
        ("record.type", with(&["record", "type"], json!(NAME))),
        ("send_after", with(&["send_after"], json!(EMAIL))),
        (
            "idempotency_key",
            with(&["idempotency_key"], json!(PHONE.repeat(20))),
        ),
        ("contains_roi", with(&["contains_roi"], json!(NAME))),
        (
            "consent.captured_at",
            with(
                &["consent"],
                json!({ "basis": "express", "source": NAME, "captured_at": EMAIL }),
            ),
        ),
        (
            "consent.basis",
            with(
                &["consent"],
                json!({ "basis": NAME, "source": "form", "captured_at": "2024-01-01T00:00:00Z" }),
            ),
        ),
        ("$", json!([NAME, PHONE, EMAIL])),
    ];
    let mut all: Vec<(&str, &str, Vec<u8>)> = values
        .into_iter()
        .map(|(field, v)| (field, "send.sms", serde_json::to_vec(&v).expect("json")))
        .collect();
    let text = base().to_string();
    let duplicate = text.replacen('{', &format!("{{\"owner\":\"{NAME}\","), 1);
    let truncated = format!("{{\"recipient\": {{\"phone\": \"{PHONE}\", \"name\": \"{NAME}");
    let huge = with(
        &["template", "vars", "pad"],
        json!(NAME.repeat(MAX_PAYLOAD_BYTES / 8)),
    );
    all.extend([
        ("owner", "send.sms", duplicate.into_bytes()),
        ("$", "send.sms", truncated.into_bytes()),
        ("$", "send.sms", serde_json::to_vec(&huge).expect("json")),
    ]);
    all
}

#[tokio::test]
async fn refusals_over_amqp_keep_personal_data_out_of_logs_and_reasons() {
    let (logs, _capture) = Captured::start();
    let fleet = SendFleet::start(&[]).await;
    let mut cases = refusals(fleet.client_id);
    // A valid request on another channel's queue, refused by the sender itself.
    let misrouted = serde_json::to_vec(&sms_request("pii-route", PHONE, fleet.client_id));
    cases.push(("routing key", "send.email", misrouted.expect("json")));
    for (_, routing_key, body) in &cases {
        fleet.send_raw(routing_key, body).await;
    }
    let rows = rejected_reach(&fleet.env, cases.len()).await;
    assert_eq!(rows.len(), cases.len());
    for (reason, payload) in &rows {
        assert_clean("rejected_input.reason", reason);
        let (field, ..) = cases
            .iter()
            .find(|(_, _, body)| body == payload)
            .expect("a rejection per case");
        assert!(reason.contains(field), "`{reason}` names {field}");
    }
    let count = u32::try_from(cases.len()).expect("count");
    for (_, reason) in dead(&fleet.env, count).await {
        assert_clean("x-comms-reason", &reason);
    }
    let captured = logs.text();
    assert!(
        captured.contains("message rejected"),
        "the logs were captured"
    );
    assert_clean("the logs", &captured);
    fleet.stop().await;
}

#[tokio::test]
async fn refusals_over_http_keep_personal_data_out_of_logs_and_answers() {
    let (logs, _capture) = Captured::start();
    let gw = Gateway::start(&[]).await;
    let created = api_keys::create(&gw.env.pool, "crm", Role::Enqueue)
        .await
        .expect("key");
    for (field, _, body) in refusals(Uuid::new_v4()) {
        let response = gw
            .http
            .post(format!("{}/v1/messages", gw.url))
            .header("authorization", format!("Bearer {}", created.key))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("gateway answers");
        let status = response.status().as_u16();
        let answer = response.text().await.expect("body");
        assert!(matches!(status, 413 | 422), "{field}: {status} {answer}");
        assert_clean("the answer", &answer);
        if status == 422 {
            assert!(
                answer.contains(&format!("\"field\":\"{field}\"")),
                "{field}: {answer}"
            );
        }
    }
    let captured = logs.text();
    assert!(
        captured.contains("send request refused"),
        "the logs were captured"
    );
    assert_clean("the logs", &captured);
    assert!(
        gw.env
            .drain(&gw.env.topology.send_queue("sms").name)
            .await
            .is_empty(),
        "nothing was published"
    );
    gw.stop().await;
}
