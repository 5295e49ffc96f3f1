//! The fleet's provider traffic checked against the providers' own OpenAPI descriptions (the
//! fragments vendored in `workers/comms-sandbox/oai/`): the requests the sender really builds, as the
//! sandbox captured them, and the answers the sandbox gives. A sender change that Twilio or SendGrid
//! would refuse, or a sandbox answer their SDKs would not expect, fails here instead of in
//! production.

use comms_sandbox::{RunningSandbox, SandboxConfig};
use comms_tests::fleet::{SendFleet, sms_request};
use jsonschema::Validator;
use serde_json::{Value, json};

const TWILIO: &str =
    include_str!("../../../workers/comms-sandbox/oai/twilio_api_v2010.messages-create.json");
const SENDGRID: &str =
    include_str!("../../../workers/comms-sandbox/oai/tsg_mail_v3.mail-send.json");
const TWILIO_OPERATION: &str = "/paths/~12010-04-01~1Accounts~1{AccountSid}~1Messages.json/post";
const TWILIO_REQUEST: &str = "/requestBody/content/application~1x-www-form-urlencoded/schema";
const SENDGRID_REQUEST: &str =
    "/components/requestBodies/PostMailSend/content/application~1json/schema";
const SENDGRID_ERROR: &str = "/components/schemas/ErrorResponse";

/// OpenAPI 3.0's `nullable: true`, said in JSON Schema: the type also admits `null`.
fn admit_null(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true))
                && let Some(Value::String(kind)) = map.get("type").cloned()
            {
                map.insert("type".into(), json!([kind, "null"]));
            }
            map.values_mut().for_each(admit_null);
        }
        Value::Array(items) => items.iter_mut().for_each(admit_null),
        _ => {}
    }
}

fn is_e164(value: &str) -> bool {
    value.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A validator for the schema at `pointer` in a vendored `document`, its `$ref`s resolving within
/// the document.
fn validator(document: &str, pointer: &str) -> Validator {
    let mut document: Value = serde_json::from_str(document).expect("a vendored fragment is JSON");
    admit_null(&mut document);
    let target = document
        .pointer(pointer)
        .cloned()
        .unwrap_or_else(|| panic!("{pointer} is in the fragment"));
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "#/$defs/target",
        "$defs": { "target": target },
        "components": document["components"],
    });
    jsonschema::options()
        .should_validate_formats(true)
        .with_format("phone-number", is_e164)
        .with_format("date-time-rfc-2822", |s: &str| {
            chrono::DateTime::parse_from_rfc2822(s).is_ok()
        })
        .build(&root)
        .expect("the fragment compiles as JSON Schema")
}

fn assert_valid(validator: &Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} breaks the provider's schema: {errors:?}\n{instance:#}"
    );
}

fn assert_invalid(validator: &Validator, instance: &Value, what: &str) {
    assert!(
        !validator.is_valid(instance),
        "{what} should break the schema:\n{instance:#}"
    );
}

/// Twilio's `x-twilio.conditional`: a sender, and some content.
fn assert_twilio_conditionals(request: &Value) {
    let has = |name: &str| request.get(name).is_some();
    assert!(has("From") || has("MessagingServiceSid"), "{request}");
    assert!(
        has("Body") || has("MediaUrl") || has("ContentSid"),
        "{request}"
    );
}

#[tokio::test]
async fn the_vendored_schemas_catch_what_the_providers_refuse() {
    // The checks below are only worth something if the schemas bite.
    let twilio = validator(TWILIO, &format!("{TWILIO_OPERATION}{TWILIO_REQUEST}"));
    assert_invalid(
        &twilio,
        &json!({ "To": "5550001", "Body": "x" }),
        "a local number",
    );
    assert_invalid(&twilio, &json!({ "Body": "x" }), "no To");
    let service = json!({ "To": "+15005550001", "MessagingServiceSid": "MGsandbox" });
    assert_invalid(&twilio, &service, "a malformed service SID");
    let callback = json!({ "To": "+15005550001", "StatusCallback": "/webhooks/twilio/status" });
    assert_invalid(&twilio, &callback, "a relative StatusCallback");
    let sendgrid = validator(SENDGRID, SENDGRID_REQUEST);
    let too_many = json!({
        "personalizations": vec![json!({ "to": [{ "email": "a@example.com" }] }); 1001],
        "from": { "email": "b@example.com" }
    });
    assert_invalid(&sendgrid, &too_many, "1001 personalizations");
    let categories = json!({
        "personalizations": [{ "to": [{ "email": "a@example.com" }] }],
        "from": { "email": "b@example.com" },
        "categories": (0..11).map(|i| format!("c{i}")).collect::<Vec<_>>()
    });
    assert_invalid(&sendgrid, &categories, "11 categories");
    let error = validator(SENDGRID, SENDGRID_ERROR);
    let with_null_help = json!({ "errors": [{ "message": "m", "field": null, "help": null }] });
    assert_invalid(&error, &with_null_help, "\"help\": null");
}

#[tokio::test]
async fn what_the_sender_sends_matches_the_providers_request_schemas() {
    let fleet = SendFleet::start(&[
        (
            "COMMS__PROVIDERS__TWILIO__STATUS_CALLBACK",
            "https://gateway.example.com/webhooks/twilio/status",
        ),
        ("COMMS__PROVIDERS__SENDGRID__FROM_NAME", "Acme Agency"),
    ])
    .await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}, welcome aboard!")
        .await;
    fleet
        .approved_template(
            "review",
            "email",
            Some("How did we do, {{ name }}?"),
            "Hello {{ name }}",
        )
        .await;
    fleet
        .send(&sms_request("schema-sms", "+14155552671", fleet.client_id))
        .await;
    fleet
        .send(&json!({
            "idempotency_key": "schema-email", "channel": "email", "kind": "review_request",
            "recipient": { "email": "dana@example.com" },
            "template": { "name": "review", "vars": { "name": "Dana" } },
            "record": { "type": "client", "id": fleet.client_id.to_string() },
            "consent": { "basis": "express", "source": "checkout", "captured_at": "2026-11-01T10:00:00Z" },
            "owner": "ana", "source": "reviews", "trigger": "project.completed"
        }))
        .await;
    assert!(fleet.reaches("schema-sms", "sent").await);
    assert!(fleet.reaches("schema-email", "sent").await);
    let captured = fleet.sandbox().messages().await.expect("sandbox");
    let request = |provider: comms_sandbox::Provider| {
        captured
            .iter()
            .find(|m| m.provider == provider)
            .map(|m| m.request.clone())
            .expect("one captured request per provider")
    };

    let sms = request(comms_sandbox::Provider::Twilio);
    let twilio = validator(TWILIO, &format!("{TWILIO_OPERATION}{TWILIO_REQUEST}"));
    assert_valid(&twilio, &sms, "the sender's Twilio request");
    assert_twilio_conditionals(&sms);
    assert_eq!(
        sms["StatusCallback"],
        "https://gateway.example.com/webhooks/twilio/status"
    );

    let email = request(comms_sandbox::Provider::Sendgrid);
    let sendgrid = validator(SENDGRID, SENDGRID_REQUEST);
    assert_valid(&sendgrid, &email, "the sender's SendGrid request");
    assert_eq!(email["from"]["name"], "Acme Agency");
    assert!(email["headers"]["List-Unsubscribe"].is_string(), "{email}");
    fleet.stop().await;
}

#[tokio::test]
async fn what_the_sandbox_answers_matches_the_providers_response_schemas() {
    let sandbox = RunningSandbox::start(SandboxConfig::generated().expect("key"))
        .await
        .expect("sandbox");
    let base = sandbox.base_url();
    let http = reqwest::Client::new();
    let account = comms_sandbox::DEFAULT_TWILIO_ACCOUNT_SID;
    let created = http
        .post(format!(
            "{base}/2010-04-01/Accounts/{account}/Messages.json"
        ))
        .basic_auth(account, Some(comms_sandbox::DEFAULT_TWILIO_AUTH_TOKEN))
        .form(&[
            ("To", "+15005550001"),
            ("From", "+15005550006"),
            ("Body", "Grüße"),
        ])
        .send()
        .await
        .expect("twilio face");
    assert_eq!(created.status(), 201);
    let resource: Value = created.json().await.expect("json");
    let message = validator(TWILIO, "/components/schemas/api.v2010.account.message");
    assert_valid(&message, &resource, "the sandbox's message resource");

    let error = validator(SENDGRID, SENDGRID_ERROR);
    let url = format!("{base}/v3/mail/send");
    let refusals = [
        http.post(&url).json(&json!({})),
        http.post(&url).bearer_auth("SG.x").body("not json"),
        http.post(&url).bearer_auth("SG.x").header("content-type", "application/json").body("{"),
        http.post(&url).bearer_auth("SG.x").json(&json!({
            "personalizations": [{ "to": [{ "email": "nope" }], "custom_args": { "n": 1 } }],
            "from": { "email": "b@example.com" }, "subject": "s",
            "headers": { "To": "x" }, "categories": (0..11).map(|i| i.to_string()).collect::<Vec<_>>(),
            "content": [{ "type": "text/html", "value": "<p>x</p>" }, { "type": "text/plain", "value": "x" }]
        })),
    ];
    for refusal in refusals {
        let answer = refusal.send().await.expect("sendgrid face");
        let status = answer.status();
        assert!(status.is_client_error(), "{status}");
        let body: Value = answer.json().await.expect("an error body is JSON");
        assert_valid(
            &error,
            &body,
            &format!("the sandbox's SendGrid {status} body"),
        );
    }
    sandbox.shutdown().await.expect("shutdown");
}

/// `make run` and every test rely on the fleet's default Twilio account being the one the sandbox
/// expects, in Twilio's own form, with a sending number the sandbox takes.
#[test]
fn the_fleet_defaults_are_the_sandbox_account() {
    use secrecy::ExposeSecret;
    let defaults = comms_runtime::settings::TwilioSettings::default();
    assert_eq!(
        defaults.account_sid,
        comms_sandbox::DEFAULT_TWILIO_ACCOUNT_SID
    );
    assert!(comms_sandbox::is_twilio_sid(&defaults.account_sid, "AC"));
    assert_eq!(
        defaults.auth_token.expose_secret(),
        comms_sandbox::DEFAULT_TWILIO_AUTH_TOKEN
    );
    assert!(is_e164(&defaults.from), "{}", defaults.from);
}
