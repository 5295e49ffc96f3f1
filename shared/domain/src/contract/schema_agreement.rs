//! Keeps `docs/send-request.schema.json` and the Rust types describing the same request.
//!
//! Other teams generate clients and validators from the schema, while the fleet accepts what the
//! Rust types accept; if the two drift, a request that passes their checks bounces off ours.
//! The Rust side is derived, not restated: the enums' `ALL` lists, the keys a fully populated
//! request serialises to, and which keys the parser refuses to go without.

use std::collections::BTreeSet;

use comms_runtime::schema_shape::{keys, strings};
use serde_json::{Map, Value, json};

use super::{
    Channel, ConsentBasis, Kind, MAX_EMAIL_CHARS, MAX_TEMPLATE_NAME_CHARS, MAX_TEMPLATE_VERSION,
    MAX_TEXT_CHARS, RecordType, RequestErrors, SEND_REQUEST_V1, ValidSendRequest,
    parse_send_request,
};

const SCHEMA: &str = include_str!("../../../../docs/send-request.schema.json");
const UUID: &str = "123e4567-e89b-12d3-a456-426614174000";

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

fn parse(value: &Value) -> Result<ValidSendRequest, RequestErrors> {
    parse_send_request(value.to_string().as_bytes())
}

/// A request with every optional key present, serialised back by the Rust side.
fn full_written() -> Value {
    let full = json!({
        "schema": SEND_REQUEST_V1,
        "idempotency_key": "k",
        "channel": "sms",
        "kind": "outreach",
        "recipient": { "phone": "+14155552671", "name": "Ana", "time_zone": "UTC" },
        "template": { "name": "t", "version": 1, "vars": { "a": 1 } },
        "record": { "type": "report", "id": UUID },
        "owner": "o",
        "source": "s",
        "trigger": "t",
        "consent": { "basis": "express", "source": "form", "captured_at": "2024-01-01T00:00:00Z" },
        "send_after": "2025-05-01T09:00:00Z",
        "contains_roi": true,
        "ai_draft": true
    });
    serde_json::to_value(parse(&full).expect("full request")).expect("serialise")
}

fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .filter(|k| !k.is_empty())
        .fold(value, |v, k| &v[k])
}

fn object_at<'a>(value: &'a mut Value, path: &str) -> &'a mut Map<String, Value> {
    let node = path
        .split('.')
        .filter(|k| !k.is_empty())
        .fold(value, |v, k| &mut v[k]);
    node.as_object_mut().expect("an object at path")
}

fn wire(all: impl Iterator<Item = &'static str>) -> BTreeSet<String> {
    all.map(str::to_owned).collect()
}

/// At `path` of `example` (every key populated): the schema node's `properties` are exactly the
/// keys Rust writes, its `required` are exactly the keys whose removal Rust refuses, and a stray
/// key is refused.
fn check_object(node: &Value, example: &Value, path: &str) {
    let written = keys(at(example, path));
    assert_eq!(keys(&node["properties"]), written, "properties at `{path}`");
    let refused_without: BTreeSet<String> = written
        .iter()
        .filter(|key| {
            let mut less = example.clone();
            object_at(&mut less, path).remove(*key);
            parse(&less).is_err()
        })
        .cloned()
        .collect();
    assert_eq!(
        strings(&node["required"]),
        refused_without,
        "required at `{path}`"
    );
    let mut stray = example.clone();
    object_at(&mut stray, path).insert("zz_stray".to_owned(), json!(1));
    let field = format!("{path}.zz_stray");
    let err = parse(&stray).expect_err("stray key");
    assert!(
        err.has_field(field.trim_start_matches('.')),
        "stray key at `{path}`: {err}"
    );
}

#[test]
fn objects_match() {
    let root = schema();
    assert_eq!(
        root["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(root["properties"]["schema"]["const"], SEND_REQUEST_V1);
    let example = full_written();
    check_object(&root, &example, "");
    for path in ["template", "record", "consent"] {
        check_object(&root["properties"][path], &example, path);
    }
}

#[test]
fn recipient_variants_match() {
    let variants = schema()["properties"]["recipient"]["oneOf"].clone();
    let variants = variants.as_array().expect("oneOf");
    assert_eq!(variants.len(), 3);
    let all_keys: BTreeSet<String> = variants
        .iter()
        .flat_map(|v| keys(&v["properties"]))
        .collect();
    for (channel, recipient, address) in [
        ("sms", json!({ "contact_id": UUID }), "contact_id"),
        (
            "sms",
            json!({ "phone": "+14155552671", "name": "A", "time_zone": "UTC" }),
            "phone",
        ),
        (
            "email",
            json!({ "email": "a@b.co", "name": "A", "time_zone": "UTC" }),
            "email",
        ),
    ] {
        let mut example = full_written();
        example["channel"] = json!(channel);
        example["recipient"] = recipient;
        let written = serde_json::to_value(parse(&example).expect("variant")).expect("serialise");
        let variant = variants
            .iter()
            .find(|v| strings(&v["required"]).contains(address))
            .expect("a schema variant requiring the address key");
        check_object(variant, &written, "recipient");
        // Keys only other variants have are refused, as `oneOf` + `additionalProperties` does.
        for other in all_keys.difference(&keys(&variant["properties"])) {
            let mut mixed = written.clone();
            mixed["recipient"][other.as_str()] = json!(UUID);
            assert!(parse(&mixed).is_err(), "{address} with {other}");
        }
    }
}

#[test]
fn enums_match() {
    let root = schema();
    let p = &root["properties"];
    let channels = wire(Channel::ALL.iter().map(|v| v.as_str()));
    assert_eq!(strings(&p["channel"]["enum"]), channels);
    assert_eq!(
        strings(&p["kind"]["enum"]),
        wire(Kind::ALL.iter().map(|v| v.as_str()))
    );
    let record_types = wire(RecordType::ALL.iter().map(|v| v.as_str()));
    assert_eq!(
        strings(&p["record"]["properties"]["type"]["enum"]),
        record_types
    );
    let bases = wire(ConsentBasis::ALL.iter().map(|v| v.as_str()));
    assert_eq!(strings(&p["consent"]["properties"]["basis"]["enum"]), bases);
}

#[test]
fn enum_texts_agree_everywhere() {
    fn check<T>(all: &[T], as_str: fn(&T) -> &'static str)
    where
        T: serde::Serialize + std::str::FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
    {
        for value in all {
            let text = as_str(value);
            assert_eq!(serde_json::to_value(value).expect("serde"), json!(text));
            assert_eq!(value.to_string(), text);
            assert_eq!(text.parse::<T>().ok().as_ref(), Some(value));
            assert!(text.to_uppercase().parse::<T>().is_err());
        }
    }
    check(Channel::ALL, |v| v.as_str());
    check(Kind::ALL, |v| v.as_str());
    check(RecordType::ALL, |v| v.as_str());
    check(ConsentBasis::ALL, |v| v.as_str());
    for channel in Channel::ALL {
        assert_eq!(channel.routing_key(), format!("send.{channel}"));
    }
}

#[test]
fn limits_match() {
    let root = schema();
    let p = &root["properties"];
    let text = &root["$defs"]["text"];
    assert_eq!(text["maxLength"], json!(MAX_TEXT_CHARS));
    for key in ["idempotency_key", "owner", "source", "trigger"] {
        assert_eq!(p[key]["$ref"], "#/$defs/text", "{key}");
    }
    let template = &p["template"]["properties"];
    assert_eq!(template["version"]["maximum"], json!(MAX_TEMPLATE_VERSION));
    let name_pattern = format!("^[a-z0-9_.-]{{1,{MAX_TEMPLATE_NAME_CHARS}}}$");
    assert_eq!(template["name"]["pattern"], json!(name_pattern));
    let email = &p["recipient"]["oneOf"][2]["properties"]["email"];
    assert_eq!(email["maxLength"], json!(MAX_EMAIL_CHARS));
}

/// What the schema says of a string: its `minLength`, `maxLength` (in characters) and
/// `pattern` (unanchored, as JSON Schema reads it). Follows a local `$ref`.
fn schema_accepts(root: &Value, node: &Value, s: &str) -> bool {
    let node = match node["$ref"].as_str() {
        Some(r) => root.pointer(r.trim_start_matches('#')).expect("ref target"),
        None => node,
    };
    let chars = s.chars().count() as u64;
    let within = node["minLength"].as_u64().is_none_or(|min| chars >= min)
        && node["maxLength"].as_u64().is_none_or(|max| chars <= max);
    let pattern = node["pattern"]
        .as_str()
        .map(|p| regex::Regex::new(p).expect("regex"));
    within && pattern.is_none_or(|p| p.is_match(s))
}

/// For string fields, sample values: the schema accepts exactly what Rust accepts (`exact`), or
/// at least everything Rust accepts when Rust checks more than a schema can (phone validity).
#[test]
fn string_rules_match() {
    let root = schema();
    let p = &root["properties"];
    let long = |n: usize| "x".repeat(n);
    let texts = [
        "ops",
        " ",
        "",
        "\t\n",
        " a ",
        &long(200),
        &long(201),
        "a\u{0}b",
        "\u{0}",
    ];
    let uuids = [
        UUID,
        &UUID.to_uppercase(),
        &UUID.replace('-', ""),
        &format!("{{{UUID}}}"),
    ];
    let names = [
        "welcome",
        "a.b-c_9",
        "Welcome",
        "",
        "a b",
        "é",
        &long(100),
        &long(101),
    ];
    let phones = [
        "+14155552671",
        "+1 (415) 555-2671",
        "14155552671",
        "+1-800-FLOWERS",
        "+",
    ];
    let email_schema = &p["recipient"]["oneOf"][2]["properties"]["email"];
    let phone_schema = &p["recipient"]["oneOf"][1]["properties"]["phone"];
    #[rustfmt::skip]
    let cases: [(&str, &str, &Value, &[&str], bool); 6] = [
        ("", "owner", &p["owner"], &texts, true),
        ("", "idempotency_key", &p["idempotency_key"], &texts, true),
        ("record", "id", &p["record"]["properties"]["id"], &uuids, true),
        ("template", "name", &p["template"]["properties"]["name"], &names, true),
        ("recipient", "phone", phone_schema, &phones, false),
        ("recipient", "email", email_schema, &["a@b.co", &format!("{}@b.co", long(250))], false),
    ];
    for (path, key, node, samples, exact) in cases {
        for sample in samples {
            let mut request = full_written();
            if path == "recipient" {
                request["channel"] = json!("portal");
                request["recipient"] = json!({});
            }
            object_at(&mut request, path).insert(key.to_owned(), json!(sample));
            let rust = parse(&request).is_ok();
            let schema = schema_accepts(&root, node, sample);
            let agree = if exact {
                rust == schema
            } else {
                !rust || schema
            };
            assert!(
                agree,
                "{path}.{key} = {sample:?}: rust {rust}, schema {schema}"
            );
        }
    }
}

/// U+0000 inside template variables: the schema's `storable` definition refuses it in a string
/// or a key at any depth, and so does the validator.
#[test]
fn nul_in_template_vars_is_refused_by_both() {
    let root = schema();
    let vars = &root["properties"]["template"]["properties"]["vars"];
    assert_eq!(vars["$ref"], "#/$defs/storable");
    let storable = &root["$defs"]["storable"];
    assert_eq!(storable["additionalProperties"]["$ref"], "#/$defs/storable");
    assert_eq!(storable["items"]["$ref"], "#/$defs/storable");
    for pattern in [&storable["pattern"], &storable["propertyNames"]["pattern"]] {
        let pattern = regex::Regex::new(pattern.as_str().expect("pattern")).expect("regex");
        assert!(pattern.is_match("Ana") && !pattern.is_match("A\u{0}na"));
    }
    for bad in [
        json!({ "a": "x\u{0}" }),
        json!({ "a\u{0}": 1 }),
        json!({ "a": [1, { "b": "\u{0}" }] }),
    ] {
        let mut request = full_written();
        request["template"]["vars"] = bad;
        let err = parse(&request).expect_err("NUL in vars");
        assert_eq!(
            err.reason_code(),
            super::REASON_UNSTORABLE_CHARACTER,
            "{err}"
        );
    }
}

#[test]
fn every_object_is_closed() {
    fn walk(node: &Value, path: &str) {
        match node {
            Value::Object(o) => {
                if o.contains_key("properties") {
                    let closed = o.get("additionalProperties") == Some(&json!(false));
                    assert!(closed, "additionalProperties is not false at {path}");
                }
                o.iter().for_each(|(k, v)| walk(v, &format!("{path}/{k}")));
            }
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| walk(v, &format!("{path}/{i}"))),
            _ => {}
        }
    }
    walk(&schema(), "#");
}
