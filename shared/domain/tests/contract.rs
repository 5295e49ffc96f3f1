//! The send request (v1) from the outside: what upstream apps may send, and that everything else
//! is refused with the offending field named. The agreement between these types and
//! `docs/send-request.schema.json` is checked in `src/contract/schema_agreement.rs`.

use std::collections::BTreeSet;

use comms_domain::contract::{
    Channel, MAX_EMAIL_CHARS, MAX_TEXT_CHARS, REASON_INVALID_JSON, REASON_INVALID_REQUEST,
    REASON_PAYLOAD_TOO_LARGE, RequestErrors, SEND_REQUEST_V1, ValidSendRequest, parse_send_request,
};
use serde_json::{Value, json};

const UUID: &str = "123e4567-e89b-12d3-a456-426614174000";

fn minimal() -> Value {
    json!({
        "idempotency_key": "lead-42-welcome",
        "channel": "sms",
        "kind": "transactional",
        "recipient": { "contact_id": UUID },
        "template": { "name": "welcome", "vars": {} },
        "record": { "type": "lead", "id": UUID },
        "owner": "ops",
        "source": "crm",
        "trigger": "lead.created"
    })
}

fn full() -> Value {
    json!({
        "schema": SEND_REQUEST_V1,
        "idempotency_key": "report-7-digest",
        "channel": "sms",
        "kind": "outreach",
        "recipient": {
            "phone": "+1 (415) 555-2671", "name": " Ana ", "time_zone": "America/New_York"
        },
        "template": { "name": "digest.v2", "version": 3, "vars": { "first": "Ana" } },
        "record": { "type": "report", "id": UUID },
        "owner": " Sam Ops ",
        "source": "reporting",
        "trigger": "report.ready",
        "consent": {
            "basis": "express", "source": "web form", "captured_at": "2024-01-02T03:04:05+01:00"
        },
        "send_after": "2025-05-01T09:00:00-04:00",
        "contains_roi": true,
        "ai_draft": true
    })
}

fn parse(value: &Value) -> Result<ValidSendRequest, RequestErrors> {
    parse_send_request(value.to_string().as_bytes())
}

/// `value` with `key` set to `new` in the object at `path` (dot-separated, "" for the root);
/// `new` of `None` removes the key.
fn set(mut value: Value, path: &str, key: &str, new: Option<Value>) -> Value {
    let node = path
        .split('.')
        .filter(|k| !k.is_empty())
        .fold(&mut value, |v, k| &mut v[k]);
    let object = node.as_object_mut().expect("an object at path");
    match new {
        Some(new) => object.insert(key.to_owned(), new),
        None => object.remove(key),
    };
    value
}

fn rejects(value: &Value, field: &str) -> RequestErrors {
    let err = parse(value).expect_err("request should be refused");
    assert!(
        err.has_field(field),
        "expected an error for `{field}`, got: {err}"
    );
    err
}

#[test]
fn minimal_request_is_accepted() {
    let req = parse(&minimal()).expect("minimal request");
    assert_eq!(req.channel, Channel::Sms);
    assert_eq!(
        req.recipient.contact_id().map(|u| u.to_string()),
        Some(UUID.to_owned())
    );
    assert_eq!(req.template.version, None);
    assert!(!req.contains_roi && !req.ai_draft);
    assert!(req.consent.is_none() && req.send_after.is_none());
    assert_eq!(req.routing_key(), "send.sms");
}

#[test]
fn full_request_is_accepted_and_normalised() {
    let req = parse(&full()).expect("full request");
    assert_eq!(req.recipient.phone(), Some("+14155552671"));
    assert_eq!(req.recipient.name(), Some("Ana"));
    assert_eq!(
        req.recipient.time_zone().map(|tz| tz.name()),
        Some("America/New_York")
    );
    assert_eq!(req.owner, "Sam Ops");
    assert_eq!(req.template.version, Some(3));
    let send_after = req.send_after.map(|t| t.to_rfc3339());
    assert_eq!(send_after.as_deref(), Some("2025-05-01T13:00:00+00:00"));
    assert!(req.has_express_consent() && req.contains_roi && req.ai_draft);
    // The canonical form parses back to the same request.
    let again = parse(&serde_json::to_value(&req).expect("serialise")).expect("round trip");
    assert_eq!(again, req);
}

#[test]
fn email_and_portal_recipients() {
    let email = set(minimal(), "", "channel", Some(json!("email")));
    let to = json!({ "email": "Ana.B@Example.COM", "time_zone": "Europe/Paris" });
    let req = parse(&set(email, "", "recipient", Some(to))).expect("email request");
    assert_eq!(req.recipient.email(), Some("Ana.B@example.com"));
    for to in [
        json!({ "phone": "+442079460958" }),
        json!({ "email": "a@b.co" }),
    ] {
        let portal = set(minimal(), "", "channel", Some(json!("portal")));
        parse(&set(portal, "", "recipient", Some(to))).expect("portal takes any recipient");
    }
    let consent =
        json!({ "basis": "implied", "source": "x", "captured_at": "2024-01-01T00:00:00Z" });
    let implied = parse(&set(minimal(), "", "consent", Some(consent))).expect("implied consent");
    assert!(!implied.has_express_consent());
}

#[test]
fn not_json_and_not_an_object() {
    let err = parse_send_request(b"{\"channel\": ").expect_err("not JSON");
    assert_eq!(err.reason_code(), REASON_INVALID_JSON);
    assert_eq!(err.errors()[0].field, "$");
    assert!(
        err.errors()[0].problem.starts_with(
            "expected a JSON object (the send request); found text that is not JSON ("
        ),
        "{err}"
    );
    assert!(
        parse_send_request(b"{} trailing")
            .expect_err("trailing")
            .has_field("$")
    );
    let err = rejects(&json!([1, 2]), "$");
    assert_eq!(err.reason_code(), REASON_INVALID_REQUEST);
    assert_eq!(
        err.to_string(),
        "$: expected a JSON object (the send request); found an array"
    );
}

/// (object path, key, new value as JSON text or "-" to remove it, field expected in the error)
#[rustfmt::skip]
const INVALID: &[(&str, &str, &str, &str)] = &[
    ("", "foo", "1", "foo"),
    ("recipient", "fax", r#""x""#, "recipient.fax"),
    ("", "channel", r#""fax""#, "channel"),
    ("", "kind", r#""spam""#, "kind"),
    ("record", "type", r#""invoice""#, "record.type"),
    ("", "owner", "-", "owner"),
    ("", "owner", r#""   ""#, "owner"),
    ("", "owner", "null", "owner"),
    ("", "source", r#""""#, "source"),
    ("", "trigger", "7", "trigger"),
    ("", "idempotency_key", r#""""#, "idempotency_key"),
    ("", "idempotency_key", r#"" ""#, "idempotency_key"),
    ("", "send_after", "null", "send_after"),
    ("", "send_after", r#""next tuesday""#, "send_after"),
    ("", "contains_roi", r#""yes""#, "contains_roi"),
    ("", "recipient", r#"{"phone": "+1 123 456 7890"}"#, "recipient.phone"),
    ("", "recipient", r#"{"phone": "4155552671"}"#, "recipient.phone"),
    ("", "recipient", r#"{"phone": "+999 1234"}"#, "recipient.phone"),
    ("", "recipient", r#"{"phone": "+1-800-FLOWERS"}"#, "recipient.phone"),
    ("", "recipient", r#"{"phone": "tel:+14155552671"}"#, "recipient.phone"),
    ("", "recipient", r#"{"phone": "+14155552671", "time_zone": "Mars/Base"}"#, "recipient.time_zone"),
    ("recipient", "time_zone", r#""Europe/Paris""#, "recipient.time_zone"),
    ("recipient", "name", r#""Ana""#, "recipient.name"),
    ("", "recipient", r#"{"email": "a@b.co"}"#, "recipient"),
    ("", "recipient", "{}", "recipient"),
    ("", "recipient", r#"{"contact_id": "x", "phone": "+14155552671"}"#, "recipient"),
    ("recipient", "contact_id", r#""123e4567e89b12d3a456426614174000""#, "recipient.contact_id"),
    ("record", "id", r#""lead-42""#, "record.id"),
    ("template", "name", r#""Welcome Email""#, "template.name"),
    ("template", "name", r#""""#, "template.name"),
    ("template", "version", "0", "template.version"),
    ("template", "version", "2147483648", "template.version"),
    ("template", "vars", r#""a=1""#, "template.vars"),
    ("template", "vars", "-", "template.vars"),
    ("", "consent", r#"{"basis": "express", "source": "x", "captured_at": "?"}"#, "consent.captured_at"),
    ("", "consent", r#"{"basis": "maybe", "source": "x", "captured_at": "?"}"#, "consent.basis"),
    ("", "schema", r#""comms.send_request.v2""#, "schema"),
    ("", "schema", "1", "schema"),
];

#[test]
fn each_invalid_input_names_its_field() {
    for (path, key, new, field) in INVALID {
        let new = (*new != "-").then(|| serde_json::from_str(new).expect("case JSON"));
        let err = rejects(&set(minimal(), path, key, new), field);
        assert_eq!(err.reason_code(), REASON_INVALID_REQUEST, "{field}");
    }
    let err = rejects(&set(minimal(), "", "foo", Some(json!(1))), "foo");
    assert_eq!(
        err.to_string(),
        "foo: expected no such key (the request takes schema, idempotency_key, channel, kind, \
         recipient, template, record, owner, source, trigger, consent, send_after, contains_roi, \
         ai_draft); found a number"
    );
    // A key that is the empty string still gets a field an operator can read (found by fuzzing).
    let err = rejects(&set(minimal(), "", "", Some(json!("x"))), "\"\"");
    assert!(
        err.to_string()
            .starts_with("\"\": expected no such key (the request takes")
    );
    rejects(&set(minimal(), "record", "", Some(json!(1))), "record.\"\"");
    let err = rejects(
        &set(minimal(), "", "channel", Some(json!("fax"))),
        "channel",
    );
    assert_eq!(
        err.to_string(),
        "channel: expected one of sms, email, portal; found a string that is none of them"
    );
    let err = rejects(&set(minimal(), "", "owner", None), "owner");
    assert_eq!(
        err.to_string(),
        "owner: expected a string of 1–200 characters, not blank; found nothing (the key is \
         required)"
    );
    // A wrong version marker is the only error: the rest would be read as the wrong version.
    let v2 = set(
        minimal(),
        "",
        "schema",
        Some(json!("comms.send_request.v2")),
    );
    assert_eq!(
        rejects(&set(v2, "", "foo", Some(json!(1))), "schema")
            .errors()
            .len(),
        1
    );
    let dup = minimal().to_string().replacen('{', "{\"owner\":\"a\",", 1);
    let err = parse_send_request(dup.as_bytes()).expect_err("duplicate");
    assert_eq!(
        err.to_string(),
        "owner: expected the key once; found it more than once"
    );
}

#[test]
fn email_addresses_and_channel_fit() {
    let email = |to: &str| {
        let req = set(minimal(), "", "channel", Some(json!("email")));
        set(req, "", "recipient", Some(json!({ "email": to })))
    };
    let long = format!("{}@b.co", "a".repeat(MAX_EMAIL_CHARS));
    for bad in [
        "not-an-email",
        "a@localhost",
        "Ana <a@b.co>",
        "a@[127.0.0.1]",
        "a b@c.de",
        &long,
    ] {
        rejects(&email(bad), "recipient.email");
    }
    let phone = set(
        email("a@b.co"),
        "",
        "recipient",
        Some(json!({ "phone": "+14155552671" })),
    );
    let err = rejects(&phone, "recipient");
    assert_eq!(
        err.to_string(),
        "recipient: expected an email or contact_id recipient for channel email; found a phone"
    );
}

#[test]
fn length_limits_count_characters() {
    let key = |k: String| set(minimal(), "", "idempotency_key", Some(json!(k)));
    parse(&key("é".repeat(MAX_TEXT_CHARS))).expect("200 characters, 400 bytes");
    rejects(&key("k".repeat(MAX_TEXT_CHARS + 1)), "idempotency_key");
    let owner = set(
        minimal(),
        "",
        "owner",
        Some(json!("o".repeat(MAX_TEXT_CHARS + 1))),
    );
    let err = rejects(&owner, "owner");
    assert_eq!(
        err.to_string(),
        "owner: expected 1–200 characters, not only whitespace; found a string of 201 characters"
    );
}

#[test]
fn oversized_body_is_refused_before_parsing() {
    let limit = 64 * 1024;
    let body = set(minimal(), "template", "vars", Some(json!({ "pad": "" }))).to_string();
    let pad =
        |n: usize| body.replacen("\"pad\":\"\"", &format!("\"pad\":\"{}\"", "x".repeat(n)), 1);
    let at_limit = pad(limit - body.len());
    assert_eq!(at_limit.len(), limit);
    parse_send_request(at_limit.as_bytes()).expect("exactly 64 KiB is fine");
    let err = parse_send_request(pad(limit - body.len() + 1).as_bytes()).expect_err("oversized");
    assert_eq!(err.reason_code(), REASON_PAYLOAD_TOO_LARGE);
    assert_eq!(
        err.to_string(),
        format!("$: expected at most 65536 bytes; found {} bytes", limit + 1)
    );
    // Not even JSON, but the size is what is reported.
    let junk = vec![b'x'; limit + 10];
    assert_eq!(
        parse_send_request(&junk).expect_err("junk").reason_code(),
        REASON_PAYLOAD_TOO_LARGE
    );
}

#[test]
fn every_value_error_is_reported_at_once() {
    let value = json!({
        "idempotency_key": "",
        "channel": "email",
        "kind": "outreach",
        "recipient": { "phone": "+1 555", "time_zone": "Nowhere/Land" },
        "template": { "name": "Bad Name", "version": 0, "vars": [] },
        "record": { "type": "client", "id": "nope" },
        "owner": " ",
        "source": "",
        "trigger": "t",
        "send_after": "soon"
    });
    let err = parse(&value).expect_err("many errors");
    let fields: BTreeSet<&str> = err.errors().iter().map(|e| e.field.as_str()).collect();
    let expected = "idempotency_key recipient recipient.phone recipient.time_zone template.name \
                    template.version template.vars record.id owner source send_after";
    assert_eq!(fields, expected.split_whitespace().collect(), "{err}");
    assert_eq!(err.reason_code(), REASON_INVALID_REQUEST);
    assert!(
        err.to_string().contains(
            "; owner: expected 1–200 characters, not only whitespace; found a blank string; "
        ),
        "{err}"
    );
}
