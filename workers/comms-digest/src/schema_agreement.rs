//! Keeps `docs/digest-job.schema.json`, docs/digests.md and the job decoder ([`ReportJob`],
//! [`BatchEvent`] and their `check`) in agreement. Upstream apps build jobs from the schema while
//! the worker accepts what the decoder accepts; if they drift, a job that passes an app's checks
//! is rejected. The Rust side is derived, not restated: the keys a full job serialises to, which
//! keys the decoder refuses to go without, the routing keys and the limits it checks.

use std::collections::BTreeSet;

use comms_runtime::schema_shape::{keys, object_at, strings};
use serde_json::{Value, json};

use super::{BATCH, BatchEvent, JOB_V1, REPORT, ReportJob};

const SCHEMA: &str = include_str!("../../../docs/digest-job.schema.json");
const DOC: &str = include_str!("../../../docs/digests.md");
const ID: &str = "123e4567-e89b-12d3-a456-426614174000";

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

fn report() -> Value {
    json!({
        "schema": JOB_V1, "report_period_id": ID, "owner": "ana", "source": "crm",
        "requested_at": "2026-01-01T10:00:00Z"
    })
}

fn batch() -> Value {
    json!({
        "schema": JOB_V1, "event_id": "e-1", "contact_id": ID, "channel": "email",
        "topic": "orders", "window": { "every": "30m" }, "max_events": 10,
        "template": { "name": "orders-digest", "version": 2 }, "kind": "transactional",
        "record": { "type": "client", "id": ID }, "owner": "ana", "source": "shop",
        "event": { "order": "A-1" }
    })
}

/// Whether the worker accepts `job` under `routing_key` (decode, then every rule it checks).
fn decodes(routing_key: &str, job: &Value) -> bool {
    match routing_key {
        REPORT => serde_json::from_value::<ReportJob>(job.clone()).is_ok_and(|j| j.check().is_ok()),
        BATCH => serde_json::from_value::<BatchEvent>(job.clone()).is_ok_and(|j| j.check().is_ok()),
        _ => false,
    }
}

/// The object at `path` of `value`.
fn at<'a>(value: &'a mut Value, path: &[&str]) -> &'a mut serde_json::Map<String, Value> {
    object_at(value, path).expect("an object")
}

/// Each job with its routing key, full example and schema definition.
fn jobs(schema: &Value) -> [(&'static str, Value, Value); 2] {
    [
        (REPORT, report(), schema["$defs"]["report"].clone()),
        (BATCH, batch(), schema["$defs"]["batch"].clone()),
    ]
}

#[test]
fn the_decoder_writes_exactly_the_schemas_keys_and_refuses_strays() {
    let schema = schema();
    let report_job: ReportJob = serde_json::from_value(report()).expect("decodes");
    let batch_event: BatchEvent = serde_json::from_value(batch()).expect("decodes");
    let written = [
        serde_json::to_value(&report_job).expect("encodes"),
        serde_json::to_value(&batch_event).expect("encodes"),
    ];
    for ((routing_key, full, node), written) in jobs(&schema).into_iter().zip(written) {
        assert_eq!(keys(&written), keys(&node["properties"]), "{routing_key}");
        assert_eq!(node["additionalProperties"], json!(false), "{routing_key}");
        assert!(
            decodes(routing_key, &full),
            "{routing_key}: the example decodes"
        );
        let mut stray = full.clone();
        at(&mut stray, &[]).insert("zz_stray".into(), json!(1));
        assert!(
            !decodes(routing_key, &stray),
            "{routing_key}: a stray key is refused"
        );
    }
    let p = &schema["$defs"]["batch"]["properties"];
    for path in ["window", "template", "record"] {
        assert_eq!(
            keys(&written_batch()[path]),
            keys(&p[path]["properties"]),
            "{path}"
        );
        assert_eq!(p[path]["additionalProperties"], json!(false), "{path}");
        let mut stray = batch();
        at(&mut stray, &[path]).insert("zz_stray".into(), json!(1));
        assert!(!decodes(BATCH, &stray), "a stray key in {path} is refused");
    }
}

/// A batch job with every optional key, as the decoder writes it back.
fn written_batch() -> Value {
    let mut full = batch();
    full["window"] = json!({ "every": "30m", "look_back": "5m", "daily_at": "08:00" });
    let event: BatchEvent = serde_json::from_value(full).expect("decodes (unchecked)");
    serde_json::to_value(&event).expect("encodes")
}

#[test]
fn the_schemas_required_keys_are_exactly_those_the_decoder_cannot_go_without() {
    let schema = schema();
    for (routing_key, full, node) in jobs(&schema) {
        let refused: BTreeSet<String> = keys(&full)
            .into_iter()
            .filter(|key| {
                let mut less = full.clone();
                at(&mut less, &[]).remove(key);
                !decodes(routing_key, &less)
            })
            .collect();
        assert_eq!(strings(&node["required"]), refused, "{routing_key}");
    }
    let p = &schema["$defs"]["batch"]["properties"];
    for path in ["template", "record"] {
        let refused: BTreeSet<String> = keys(&batch()[path])
            .into_iter()
            .filter(|key| {
                let mut less = batch();
                at(&mut less, &[path]).remove(key);
                !decodes(BATCH, &less)
            })
            .collect();
        assert_eq!(strings(&p[path]["required"]), refused, "{path}");
    }
    // The window: exactly one of its keys (the schema's oneOf).
    let alternatives: BTreeSet<String> = p["window"]["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .flat_map(|alternative| strings(&alternative["required"]))
        .collect();
    assert_eq!(alternatives, keys(&p["window"]["properties"]));
    let example = json!({ "every": "30m", "look_back": "30m", "daily_at": "08:00" });
    for only in &alternatives {
        let mut job = batch();
        job["window"] = json!({ only.clone(): example[only].clone() });
        assert!(decodes(BATCH, &job), "{only} alone is a window");
    }
    for window in [json!({}), json!({ "every": "30m", "daily_at": "08:00" })] {
        let mut job = batch();
        job["window"] = window.clone();
        assert!(!decodes(BATCH, &job), "{window} is not a window");
    }
}

#[test]
fn enums_routing_keys_and_limits_agree() {
    let schema = schema();
    let routing: BTreeSet<String> = [REPORT, BATCH].iter().map(|k| k.to_string()).collect();
    assert_eq!(strings(&schema["$defs"]["routing_key"]["enum"]), routing);
    assert!(!decodes("digest.other", &report()));
    assert_eq!(schema["$defs"]["schema"]["const"], json!(JOB_V1));
    let mut other = report();
    other["schema"] = json!("comms.digest_job.v2");
    assert!(!decodes(REPORT, &other));

    let p = &schema["$defs"]["batch"]["properties"];
    for channel in strings(&p["channel"]["enum"]) {
        let mut job = batch();
        job["channel"] = json!(channel);
        assert!(decodes(BATCH, &job), "channel {channel}");
    }
    let mut job = batch();
    job["channel"] = json!("fax");
    assert!(!decodes(BATCH, &job));

    let (min, max) = (&p["max_events"]["minimum"], &p["max_events"]["maximum"]);
    assert_eq!((min, max), (&json!(1), &json!(1000)));
    for (n, ok) in [(0, false), (1, true), (1000, true), (1001, false)] {
        let mut job = batch();
        job["max_events"] = json!(n);
        assert_eq!(decodes(BATCH, &job), ok, "max_events {n}");
    }
    assert_eq!(p["template"]["properties"]["version"]["minimum"], json!(1));
    let mut job = batch();
    job["template"]["version"] = json!(0);
    assert!(!decodes(BATCH, &job));

    let name = &schema["$defs"]["name"];
    assert_eq!(
        (&name["minLength"], &name["maxLength"]),
        (&json!(1), &json!(200))
    );
    for (value, ok) in [
        ("a".repeat(200), true),
        ("a".repeat(201), false),
        ("  ".into(), false),
    ] {
        let mut job = report();
        job["owner"] = json!(value);
        assert_eq!(decodes(REPORT, &job), ok, "owner of {} chars", value.len());
        let mut job = batch();
        job["topic"] = json!(value);
        assert_eq!(decodes(BATCH, &job), ok, "topic of {} chars", value.len());
    }

    let daily = p["window"]["properties"]["daily_at"]["pattern"]
        .as_str()
        .expect("a pattern");
    assert_eq!(daily, "^([01][0-9]|2[0-3]):[0-5][0-9]$");
    for (at, ok) in [
        ("00:00", true),
        ("23:59", true),
        ("24:00", false),
        ("08:60", false),
    ] {
        let mut job = batch();
        job["window"] = json!({ "daily_at": at });
        assert_eq!(decodes(BATCH, &job), ok, "daily_at {at}");
    }
    for (every, ok) in [
        ("1s", true),
        ("31days", true),
        ("500ms", false),
        ("32days", false),
    ] {
        let mut job = batch();
        job["window"] = json!({ "every": every });
        assert_eq!(decodes(BATCH, &job), ok, "every {every}");
    }
}

#[test]
fn every_field_and_routing_key_is_documented_in_digests_md() {
    let schema = schema();
    for (routing_key, _, node) in jobs(&schema) {
        assert!(DOC.contains(&format!("`{routing_key}`")), "{routing_key}");
        for key in keys(&node["properties"]) {
            assert!(
                DOC.contains(&format!("`{key}`")),
                "docs/digests.md does not document `{key}` of {routing_key}"
            );
        }
    }
    let p = &schema["$defs"]["batch"]["properties"];
    for path in ["window", "template", "record"] {
        for key in keys(&p[path]["properties"]) {
            assert!(
                DOC.contains(&format!("`{key}`")),
                "docs/digests.md does not document `{path}.{key}`"
            );
        }
    }
    assert!(
        DOC.contains("digest-job.schema.json"),
        "the doc links the schema"
    );
}
