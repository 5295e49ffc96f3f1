//! Keeps `docs/incident-event.schema.json`, docs/incidents.md and the decoder ([`parse`]) in
//! agreement. Incident tooling builds its events from the schema while the worker accepts what
//! the decoder accepts; if they drift, an event that passes the tooling's checks is dead-lettered.
//! The Rust side is derived, not restated: the keys a full event serialises to, which keys the
//! decoder refuses to go without, the routing keys of [`EventType::ALL`] and the limits it checks.

use std::collections::BTreeSet;

use comms_runtime::schema_shape::{keys, object_at, strings};
use serde_json::{Value, json};

use super::{EventType, IncidentEvent, MAX_TITLE, parse};

const SCHEMA: &str = include_str!("../../../../docs/incident-event.schema.json");
const DOC: &str = include_str!("../../../../docs/incidents.md");
const ID: &str = "123e4567-e89b-12d3-a456-426614174000";

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

fn full() -> Value {
    json!({
        "incident_id": ID, "sequence": 2, "title": "Outage", "severity": "major",
        "affected": { "clients": [ID], "projects": [ID] }, "facts_verified": true,
        "owner": "ana", "source": "statuspage", "occurred_at": "2026-01-01T10:00:00Z",
        "template": { "name": "incident-notice", "version": 1, "vars": { "what": "x" } },
        "summary_internal": "db-7"
    })
}

fn decodes(value: &Value) -> bool {
    parse("incident.updated", value.to_string().as_bytes()).is_ok()
}

/// The object at `path` of `value`.
fn at<'a>(value: &'a mut Value, path: &[&str]) -> &'a mut serde_json::Map<String, Value> {
    object_at(value, path).expect("an object")
}

#[test]
fn the_decoder_writes_exactly_the_schemas_keys_and_refuses_strays() {
    let schema = schema();
    let event: IncidentEvent = serde_json::from_value(full()).expect("decodes");
    let written = serde_json::to_value(&event).expect("encodes");
    assert_eq!(keys(&written), keys(&schema["properties"]));
    for path in [&["affected"][..], &["template"]] {
        let node = &schema["properties"][path[0]];
        assert_eq!(
            keys(&written[path[0]]),
            keys(&node["properties"]),
            "{path:?}"
        );
        assert_eq!(node["additionalProperties"], json!(false));
    }
    assert_eq!(schema["additionalProperties"], json!(false));
    for path in [&[][..], &["affected"], &["template"]] {
        let mut stray = full();
        at(&mut stray, path).insert("zz_stray".into(), json!(1));
        assert!(!decodes(&stray), "a stray key at {path:?} is refused");
    }
}

#[test]
fn the_schemas_required_keys_are_exactly_those_the_decoder_cannot_go_without() {
    let schema = schema();
    for (path, node) in [
        (&[][..], &schema),
        (&["template"], &schema["properties"]["template"]),
    ] {
        let refused: BTreeSet<String> = keys(&Value::Object(at(&mut full(), path).clone()))
            .into_iter()
            .filter(|key| {
                let mut less = full();
                at(&mut less, path).remove(key);
                !decodes(&less)
            })
            .collect();
        assert_eq!(strings(&node["required"]), refused, "required at {path:?}");
    }
    // `affected` needs one non-empty list of the two (the schema's anyOf).
    let any_of = &schema["properties"]["affected"]["anyOf"];
    let alternatives: BTreeSet<String> = any_of
        .as_array()
        .expect("anyOf")
        .iter()
        .flat_map(|alternative| strings(&alternative["required"]))
        .collect();
    assert_eq!(
        alternatives,
        keys(&schema["properties"]["affected"]["properties"])
    );
    for only in &alternatives {
        let mut event = full();
        at(&mut event, &["affected"]).retain(|k, _| k == only);
        assert!(decodes(&event), "{only} alone is enough");
        event["affected"][only] = json!([]);
        assert!(!decodes(&event), "{only} empty is not");
    }
}

#[test]
fn enums_routing_keys_and_limits_agree() {
    let schema = schema();
    let p = &schema["properties"];
    for severity in strings(&p["severity"]["enum"]) {
        let mut event = full();
        event["severity"] = json!(severity);
        assert!(decodes(&event), "severity {severity}");
    }
    let mut event = full();
    event["severity"] = json!("catastrophic");
    assert!(!decodes(&event));
    let routing: BTreeSet<String> = EventType::ALL.iter().map(|(_, k)| k.to_string()).collect();
    assert_eq!(strings(&schema["$defs"]["routing_key"]["enum"]), routing);
    assert!(parse("incident.unknown", full().to_string().as_bytes()).is_err());

    assert_eq!(p["title"]["maxLength"], json!(MAX_TITLE));
    let title = |n: usize| {
        let mut event = full();
        event["title"] = json!("t".repeat(n));
        decodes(&event)
    };
    assert!(title(MAX_TITLE) && !title(MAX_TITLE + 1) && !title(0));
    assert_eq!(p["sequence"]["minimum"], json!(1));
    let mut zero = full();
    zero["sequence"] = json!(0);
    assert!(!decodes(&zero));
    let template = &p["template"]["properties"];
    assert_eq!(template["name"]["pattern"], json!("^[a-z0-9_.-]{1,90}$"));
    for (name, ok) in [
        ("a".repeat(90), true),
        ("a".repeat(91), false),
        ("Caps".into(), false),
    ] {
        let mut event = full();
        event["template"]["name"] = json!(name);
        assert_eq!(decodes(&event), ok, "template name {name}");
    }
    assert_eq!(template["version"]["minimum"], json!(1));
    let mut version = full();
    version["template"]["version"] = json!(0);
    assert!(!decodes(&version));
}

#[test]
fn every_field_and_routing_key_is_documented_in_incidents_md() {
    let schema = schema();
    for key in keys(&schema["properties"]) {
        assert!(
            DOC.contains(&format!("| `{key}` |")),
            "docs/incidents.md does not document the field `{key}`"
        );
    }
    for path in ["affected", "template"] {
        for key in keys(&schema["properties"][path]["properties"]) {
            assert!(
                DOC.contains(&format!("\"{key}\"")),
                "docs/incidents.md does not document `{path}.{key}`"
            );
        }
    }
    for key in strings(&schema["$defs"]["routing_key"]["enum"]) {
        assert!(
            DOC.contains(&format!("`{key}`")),
            "docs/incidents.md: {key}"
        );
    }
    assert!(
        DOC.contains("incident-event.schema.json"),
        "the doc links the schema"
    );
}
