//! Keeps `docs/event.schema.json`, docs/upstream.md and [`LifecycleEvent`] in agreement: the keys
//! the Rust side writes are the schema's, the schema's required keys are the ones the Rust side
//! cannot go without, and every event field is documented.

use std::collections::BTreeSet;

use comms_runtime::schema_shape::keys;
use serde_json::{Value, json};

use super::{EVENT_V1, LifecycleEvent};

const SCHEMA: &str = include_str!("../../../../docs/event.schema.json");
const DOC: &str = include_str!("../../../../docs/upstream.md");
const ID: &str = "123e4567-e89b-12d3-a456-426614174000";

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

fn full_event() -> Value {
    json!({
        "schema": EVENT_V1, "event_id": ID, "type": "task.opened",
        "occurred_at": "2026-11-30T10:00:00Z", "app": "crm", "reason": "r",
        "message": {
            "id": ID, "idempotency_key": "k", "channel": "sms", "kind": "transactional",
            "record": { "type": "client", "id": ID }, "owner": "ana", "source": "crm",
            "delivery_state": "delivered", "reply_state": "none", "opt_out_state": "none",
            "failure_reason": null, "next_action": null, "attempts": 1
        },
        "task": {
            "id": ID, "owner": "ana", "title": "t", "next_action": "n", "state": "open",
            "due_at": null, "record": null
        },
        "incident": {
            "id": ID, "sequence": 3, "severity": "major", "facts_verified": true, "owner": "ana",
            "source": "statuspage", "clients": [ID]
        },
        "digest": {
            "id": ID, "period_id": ID, "revision": 1, "client_id": ID, "state": "approved",
            "owner": "ana", "source": "schedule"
        }
    })
}

#[test]
fn the_rust_event_writes_exactly_the_schemas_keys() {
    let schema = schema();
    let event: LifecycleEvent = serde_json::from_value(full_event()).expect("decodes");
    let written = serde_json::to_value(&event).expect("encodes");
    assert_eq!(keys(&written), keys(&schema["properties"]));
    let message = &schema["properties"]["message"]["oneOf"][1];
    assert_eq!(keys(&written["message"]), keys(&message["properties"]));
    let task = &schema["properties"]["task"]["oneOf"][1];
    assert_eq!(keys(&written["task"]), keys(&task["properties"]));
    let incident = &schema["properties"]["incident"]["oneOf"][1];
    assert_eq!(keys(&written["incident"]), keys(&incident["properties"]));
    let digest = &schema["properties"]["digest"]["oneOf"][1];
    assert_eq!(keys(&written["digest"]), keys(&digest["properties"]));
    assert_eq!(schema["properties"]["schema"]["const"], json!(EVENT_V1));
}

#[test]
fn every_key_the_schema_requires_is_one_the_decoder_cannot_go_without() {
    let schema = schema();
    let required = |node: &Value| -> BTreeSet<String> {
        node["required"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let check = |path: &[&str], required: BTreeSet<String>| {
        for key in required {
            let mut event = full_event();
            let mut node = &mut event;
            for step in path {
                node = &mut node[*step];
            }
            node.as_object_mut().map(|o| o.remove(&key));
            assert!(
                serde_json::from_value::<LifecycleEvent>(event).is_err(),
                "{path:?}.{key} is required by the schema, so the decoder must refuse its absence"
            );
        }
    };
    check(&[], required(&schema));
    check(
        &["message"],
        required(&schema["properties"]["message"]["oneOf"][1]),
    );
    check(
        &["task"],
        required(&schema["properties"]["task"]["oneOf"][1]),
    );
}

#[test]
fn every_top_level_field_is_documented_in_upstream_md() {
    for key in keys(&schema()["properties"]) {
        assert!(
            DOC.contains(&format!("`{key}`")),
            "docs/upstream.md does not document the event field `{key}`"
        );
    }
}

#[test]
fn the_type_pattern_accepts_every_digest_event_the_triggers_write() {
    let schema = schema();
    let pattern = schema["properties"]["type"]["pattern"]
        .as_str()
        .expect("a pattern");
    let pattern = regex::Regex::new(pattern).expect("the pattern compiles");
    // Migrations 0016 (`digest.<state>`) and 0017 (`digest.viewed`).
    for what in [
        "built",
        "blocked",
        "approved",
        "published",
        "superseded",
        "viewed",
    ] {
        let kind = format!("digest.{what}");
        assert!(pattern.is_match(&kind), "{kind}");
        assert!(
            DOC.contains(&format!("`{kind}`")),
            "docs/upstream.md: {kind}"
        );
    }
    assert!(!pattern.is_match("digest.opened"));
}
