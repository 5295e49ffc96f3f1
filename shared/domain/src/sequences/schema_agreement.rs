//! Keeps `docs/enrolment.schema.json`, docs/sequences.md and the decoder ([`super::enrol::parse`])
//! in agreement: the keys a full enrolment writes, the keys the decoder cannot go without, the
//! record types, and the table of fields in the doc.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::enrol::{ENROLMENT_V1, EnrolmentRequest, parse};

const SCHEMA: &str = include_str!("../../../../docs/enrolment.schema.json");
const DOC: &str = include_str!("../../../../docs/sequences.md");
const ID: &str = "123e4567-e89b-12d3-a456-426614174000";

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

fn full() -> Value {
    json!({
        "schema": ENROLMENT_V1, "contact_id": ID, "sequence": "winback",
        "record": { "type": "lead", "id": ID }, "owner": "ana", "source": "crm"
    })
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn decodes(value: &Value) -> bool {
    parse(value.to_string().as_bytes()).is_ok()
}

#[test]
fn the_decoder_writes_exactly_the_schemas_keys_and_refuses_strays() {
    let schema = schema();
    let request: EnrolmentRequest = serde_json::from_value(full()).expect("decodes");
    let written = serde_json::to_value(&request).expect("encodes");
    assert_eq!(keys(&written), keys(&schema["properties"]));
    assert_eq!(
        keys(&written["record"]),
        keys(&schema["properties"]["record"]["properties"])
    );
    assert_eq!(schema["additionalProperties"], json!(false));
    let mut stray = full();
    stray["zz_stray"] = json!(1);
    assert!(!decodes(&stray));
    let mut stray = full();
    stray["record"]["zz_stray"] = json!(1);
    assert!(!decodes(&stray));
}

#[test]
fn the_schemas_required_keys_are_those_the_decoder_cannot_go_without() {
    let schema = schema();
    let refused: BTreeSet<String> = keys(&full())
        .into_iter()
        .filter(|key| {
            let mut less = full();
            less.as_object_mut().expect("object").remove(key);
            !decodes(&less)
        })
        .collect();
    assert_eq!(strings(&schema["required"]), refused);
}

#[test]
fn values_the_schema_refuses_the_decoder_refuses() {
    let schema = schema();
    let record_types: BTreeSet<String> = crate::contract::RecordType::ALL
        .iter()
        .map(|t| t.as_str().to_string())
        .collect();
    assert_eq!(
        strings(&schema["properties"]["record"]["properties"]["type"]["enum"]),
        record_types
    );
    for (key, bad) in [
        ("sequence", json!("Win Back")),
        ("owner", json!(" ")),
        ("source", json!("")),
        ("contact_id", json!("nope")),
        ("schema", json!("comms.enrolment.v2")),
    ] {
        let mut request = full();
        request[key] = bad;
        assert!(!decodes(&request), "{key}");
    }
}

#[test]
fn the_doc_lists_every_field() {
    for key in keys(&schema()["properties"]) {
        assert!(
            DOC.contains(&format!("| `{key}`")),
            "docs/sequences.md names `{key}`"
        );
    }
    assert!(DOC.contains("enrolment.schema.json"));
}
