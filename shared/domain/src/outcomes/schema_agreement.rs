//! Keeps `docs/outcome.schema.json`, docs/outcomes.md and the decoder ([`super::parse`]) in
//! agreement: the keys a full outcome writes (nested objects too), the required keys, the
//! vocabularies, and the fields the doc lists.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{OUTCOME_V1, OutcomeRequest, parse};

const SCHEMA: &str = include_str!("../../../../docs/outcome.schema.json");
const DOC: &str = include_str!("../../../../docs/outcomes.md");
const ID: &str = "123e4567-e89b-12d3-a456-426614174000";

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

fn booked() -> Value {
    json!({
        "schema": OUTCOME_V1, "outcome_id": "crm-981", "type": "booked",
        "occurred_at": "2026-11-30T10:00:00Z", "source": "crm", "owner": "ana",
        "booked": { "kind": "sale", "value": 1200.5, "currency": "USD" },
        "attributed_to": { "message": "welcome-0001", "enrolment": ID, "sequence": "winback",
                           "record": { "type": "lead", "id": ID } }
    })
}

fn review() -> Value {
    json!({
        "outcome_id": "rv-1", "type": "review", "source": "link",
        "review": { "result": "reviewed", "platform": "google", "rating": 4.5 },
        "attributed_to": { "message": "welcome-0001" }
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

fn written(value: Value) -> Value {
    let request: OutcomeRequest = serde_json::from_value(value).expect("decodes");
    serde_json::to_value(&request).expect("encodes")
}

#[test]
fn the_decoder_writes_exactly_the_schemas_keys_and_refuses_strays() {
    let schema = schema();
    let props = &schema["properties"];
    let (b, r) = (written(booked()), written(review()));
    let mut all = keys(&b);
    all.extend(keys(&r));
    assert_eq!(all, keys(props));
    assert_eq!(keys(&b["booked"]), keys(&props["booked"]["properties"]));
    assert_eq!(keys(&r["review"]), keys(&props["review"]["properties"]));
    assert_eq!(
        keys(&b["attributed_to"]),
        keys(&props["attributed_to"]["properties"])
    );
    for path in ["", "booked", "attributed_to"] {
        let mut stray = booked();
        let node = if path.is_empty() {
            &mut stray
        } else {
            &mut stray[path]
        };
        node["zz_stray"] = json!(1);
        assert!(!decodes(&stray), "a stray key at {path:?} is refused");
    }
}

#[test]
fn required_keys_and_vocabularies_agree() {
    let schema = schema();
    let refused: BTreeSet<String> = keys(&booked())
        .into_iter()
        .filter(|key| {
            let mut less = booked();
            less.as_object_mut().expect("object").remove(key);
            !decodes(&less)
        })
        .collect();
    // `booked` is required by the schema's oneOf for type booked, not at the top level.
    let mut required = strings(&schema["required"]);
    required.insert("booked".into());
    assert_eq!(required, refused);
    assert_eq!(
        strings(&schema["properties"]["type"]["enum"]),
        ["booked", "review"].iter().map(|s| s.to_string()).collect()
    );
    for (path, good) in [
        (&["booked", "kind"][..], &["meeting", "sale"][..]),
        (&["review", "result"], &["clicked", "reviewed", "declined"]),
    ] {
        let node = &schema["properties"][path[0]]["properties"][path[1]]["enum"];
        assert_eq!(
            strings(node),
            good.iter().map(|s| s.to_string()).collect(),
            "{path:?}"
        );
        let mut bad = if path[0] == "booked" {
            booked()
        } else {
            review()
        };
        bad[path[0]][path[1]] = json!("other");
        assert!(!decodes(&bad), "{path:?}");
    }
    let mut no_attribution = review();
    no_attribution["attributed_to"] = json!({});
    assert!(!decodes(&no_attribution), "minProperties 1");
    let mut currency_alone = booked();
    currency_alone["booked"] = json!({ "kind": "sale", "currency": "USD" });
    assert!(
        !decodes(&currency_alone),
        "dependentRequired currency -> value"
    );
    let mut both = booked();
    both["review"] = json!({ "result": "clicked" });
    assert!(!decodes(&both), "oneOf: booked or review");
}

#[test]
fn the_doc_lists_every_field() {
    let schema = schema();
    let props = &schema["properties"];
    let mut all = keys(props);
    for nested in ["booked", "review", "attributed_to"] {
        all.extend(
            keys(&props[nested]["properties"])
                .into_iter()
                .map(|k| format!("{nested}.{k}")),
        );
    }
    for key in all {
        assert!(
            DOC.contains(&format!("| `{key}`")),
            "docs/outcomes.md names `{key}`"
        );
    }
    assert!(DOC.contains("outcome.schema.json"));
}
