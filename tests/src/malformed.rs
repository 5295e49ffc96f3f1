//! A generated corpus of malformed send requests, the kinds of bad input upstream apps really
//! produce: not JSON, truncated, wrong types, deep nesting, huge numbers, NUL and lone
//! surrogates, 1 MiB bodies, duplicate keys, unknown fields, bad E.164, bad email, missing
//! fields, the wrong schema version, and (valid JSON the sender alone can judge) an unknown
//! template or a missing variable. Case `i` is always the same input, so a failure names it.

use serde_json::{Value, json};
use uuid::Uuid;

/// How the fleet must answer one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Refused by the decoder: `internal.rejected_input` (AMQP) or a 4xx (HTTP).
    Refused,
    /// Decodes, then is blocked by the sender with a named reason (the template is not there or a
    /// variable is missing): the message ends `blocked`, and its idempotency key is this one.
    BlockedAs(&'static str),
}

/// One malformed input.
#[derive(Debug, Clone)]
pub struct Case {
    pub index: usize,
    pub class: &'static str,
    pub body: Vec<u8>,
    pub expect: Expect,
    /// The idempotency key, for the cases that reach the sender.
    pub key: Option<String>,
}

/// Case classes, in the order the generator cycles through them.
pub const CLASSES: [&str; 17] = [
    "not_json",
    "truncated",
    "wrong_type",
    "deep_nesting",
    "huge_number",
    "nul",
    "lone_surrogate",
    "duplicate_key",
    "unknown_field",
    "bad_e164",
    "bad_email",
    "missing_field",
    "wrong_schema",
    "empty",
    "one_mebibyte",
    "unknown_template",
    "missing_variable",
];

/// A valid SMS request for `key`: the template `welcome` with variable `name`, to a contact of
/// `client_id` at `phone`.
pub fn valid(key: &str, phone: &str, client_id: Uuid) -> Value {
    crate::fleet::sms_request(key, phone, client_id)
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}

/// Case `index` of the corpus (every 17th case is of the same class, each a little different).
pub fn case(index: usize, phone: &str, client_id: Uuid) -> Case {
    let class = CLASSES[index % CLASSES.len()];
    let variant = index / CLASSES.len();
    let key = format!("bad-{index}");
    let base = valid(&key, phone, client_id);
    let text = String::from_utf8(bytes(&base)).expect("utf-8");
    let mut expect = Expect::Refused;
    let mut reaches_sender = None;
    let body = match class {
        "not_json" => format!("not json {variant} <xml/>").into_bytes(),
        "truncated" => text.as_bytes()[..(variant * 7) % (text.len() - 1)].to_vec(),
        "wrong_type" => {
            let mut doc = base;
            let fields = ["owner", "channel", "recipient", "template", "record"];
            doc[fields[variant % fields.len()]] = json!(variant);
            bytes(&doc)
        }
        "deep_nesting" => {
            let depth = 200 + variant % 2000;
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        "huge_number" => {
            let mut doc = base;
            doc["template"]["version"] = json!(1e300);
            let mut out = bytes(&doc);
            if variant.is_multiple_of(2) {
                out = text
                    .replacen(
                        "\"owner\"",
                        "\"n\":123456789012345678901234567890,\"owner\"",
                        1,
                    )
                    .into_bytes();
            }
            out
        }
        "nul" => {
            let mut doc = base;
            doc["template"]["vars"]["name"] = json!(format!("Da\u{0}na {variant}"));
            bytes(&doc)
        }
        "lone_surrogate" => text.replacen("\"Dana\"", "\"Da\\ud800na\"", 1).into_bytes(),
        "duplicate_key" => text
            .replacen("\"owner\":", "\"owner\":\"x\",\"owner\":", 1)
            .into_bytes(),
        "unknown_field" => {
            let mut doc = base;
            doc[format!("extra_{variant}")] = json!(true);
            bytes(&doc)
        }
        "bad_e164" => {
            let mut doc = base;
            let phones = [
                "+1",
                "14155552671",
                "+1415555267x",
                "+999999999999999999",
                "phone",
            ];
            doc["recipient"]["phone"] = json!(phones[variant % phones.len()]);
            bytes(&doc)
        }
        "bad_email" => {
            let mut doc = base;
            doc["channel"] = json!("email");
            let emails = [
                "dana",
                "dana@",
                "@example.com",
                "da na@example.com",
                "a@b@c",
            ];
            doc["recipient"] = json!({ "email": emails[variant % emails.len()] });
            bytes(&doc)
        }
        "missing_field" => {
            let mut doc = base;
            let fields = [
                "idempotency_key",
                "channel",
                "owner",
                "template",
                "record",
                "recipient",
            ];
            if let Value::Object(map) = &mut doc {
                map.remove(fields[variant % fields.len()]);
            }
            bytes(&doc)
        }
        "wrong_schema" => {
            let mut doc = base;
            doc["schema"] = json!(format!("comms.send_request.v{}", 2 + variant % 5));
            bytes(&doc)
        }
        "empty" => Vec::new(),
        "one_mebibyte" => {
            let mut doc = base;
            doc["template"]["vars"]["name"] = json!("x".repeat(1 << 20));
            bytes(&doc)
        }
        "unknown_template" => {
            let mut doc = base;
            doc["template"]["name"] = json!(format!("no_such_template_{variant}"));
            expect = Expect::BlockedAs("template_not_found");
            reaches_sender = Some(key.clone());
            bytes(&doc)
        }
        _ => {
            let mut doc = base;
            doc["template"]["vars"] = json!({ "nickname": "D" });
            expect = Expect::BlockedAs("template_render_failed");
            reaches_sender = Some(key.clone());
            bytes(&doc)
        }
    };
    Case {
        index,
        class,
        body,
        expect,
        key: reaches_sender,
    }
}
