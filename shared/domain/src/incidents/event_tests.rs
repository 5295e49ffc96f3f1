//! The event decoder's refusals: each bad event names what is wrong.

use super::*;

fn valid() -> serde_json::Value {
    serde_json::json!({
        "incident_id": Uuid::new_v4(),
        "sequence": 1,
        "title": "Tracking outage",
        "severity": "major",
        "affected": {"clients": [Uuid::new_v4()]},
        "facts_verified": false,
        "owner": "ana",
        "source": "statuspage",
        "occurred_at": "2025-01-01T10:00:00Z",
    })
}

fn parse_json(
    key: &str,
    value: &serde_json::Value,
) -> Result<(EventType, IncidentEvent), EventError> {
    parse(key, &serde_json::to_vec(value).expect("json"))
}

#[test]
fn a_valid_event_decodes_with_its_type_from_the_routing_key() {
    let (kind, event) = parse_json("incident.declared", &valid()).expect("valid");
    assert_eq!(kind, EventType::Declared);
    assert_eq!(event.severity, Severity::Major);
    for (kind, key) in EventType::ALL {
        assert_eq!(EventType::from_routing_key(key), Some(kind));
        assert_eq!(kind.routing_key(), key);
    }
}

#[test]
fn bad_events_are_refused_with_a_named_reason() {
    assert!(matches!(
        parse_json("incident.exploded", &valid()),
        Err(EventError::UnknownType(_))
    ));
    let mut unknown_field = valid();
    unknown_field["evidence"] = "raw logs".into();
    let error = parse_json("incident.updated", &unknown_field).expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with("invalid_event: unknown field `evidence`"),
        "{error}"
    );
    let mut empty = valid();
    empty["affected"] = serde_json::json!({});
    empty["sequence"] = 0.into();
    empty["owner"] = " ".into();
    let error = parse_json("incident.updated", &empty)
        .expect_err("refused")
        .to_string();
    for expected in [
        "sequence must be 1 or more",
        "owner must not be empty",
        "affected must name",
    ] {
        assert!(error.contains(expected), "{error}");
    }
    let mut severity = valid();
    severity["severity"] = "catastrophic".into();
    assert!(parse_json("incident.updated", &severity).is_err());
    assert!(parse("incident.updated", b"not json").is_err());
}
