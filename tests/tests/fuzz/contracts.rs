//! The contracts upstream apps publish: the send request (`comms.send`) and the incident event
//! (`comms.incident`). Whatever arrives, the decoder answers with a value or a named reason,
//! never a panic; what it accepts it accepts again in its canonical form; and a refusal never
//! repeats the personal value that caused it (it ends up in logs and dead letters).

use comms_domain::contract::{
    REASON_INVALID_JSON, REASON_INVALID_REQUEST, REASON_PAYLOAD_TOO_LARGE,
    REASON_UNSTORABLE_CHARACTER, canonical_bytes, parse_send_request,
};
use comms_domain::incidents::event as incident;
use proptest::prelude::*;
use serde_json::Value;

use crate::inputs::{hostile, json_value, seeds};

const REASONS: [&str; 4] = [
    REASON_INVALID_JSON,
    REASON_INVALID_REQUEST,
    REASON_PAYLOAD_TOO_LARGE,
    REASON_UNSTORABLE_CHARACTER,
];

/// The string fields of a send request that may carry a person's data, as JSON paths.
const PERSONAL_FIELDS: [&[&str]; 6] = [
    &["recipient", "phone"],
    &["recipient", "email"],
    &["recipient", "name"],
    &["recipient", "contact_id"],
    &["record", "id"],
    &["template", "vars"],
];

#[test]
fn every_seed_is_a_valid_request() {
    for seed in seeds("send_request") {
        let parsed = parse_send_request(&seed);
        assert!(parsed.is_ok(), "seed refused: {parsed:?}");
    }
    for seed in seeds("incident_event") {
        let parsed = incident::parse("incident.declared", &seed);
        assert!(parsed.is_ok(), "seed refused: {parsed:?}");
    }
}

fn set(doc: &mut Value, path: &[&str], value: Value) {
    let mut at = doc;
    for key in &path[..path.len() - 1] {
        at = &mut at[*key];
    }
    at[path[path.len() - 1]] = value;
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn the_send_request_decoder_names_a_reason_for_anything(bytes in hostile(seeds("send_request"))) {
        match parse_send_request(&bytes) {
            Ok(valid) => {
                // What is accepted is published in canonical form and accepted again as is.
                let canonical = canonical_bytes(&valid);
                if let Ok(canonical) = canonical {
                    let again = parse_send_request(&canonical).expect("canonical form is valid");
                    prop_assert_eq!(canonical_bytes(&again).expect("stable"), canonical);
                }
            }
            Err(errors) => {
                prop_assert!(REASONS.contains(&errors.reason_code()), "reason {}", errors.reason_code());
                prop_assert!(!errors.errors().is_empty());
                prop_assert!(errors.errors().iter().all(|e| !e.field.is_empty() && !e.problem.is_empty()));
            }
        }
    }

    #[test]
    fn a_refusal_never_repeats_a_personal_value(
        seed in proptest::sample::select(seeds("send_request")),
        field in proptest::sample::select(PERSONAL_FIELDS.to_vec()),
        marker in "[0-9]{9,12}",
        shape in 0..4u8,
    ) {
        let mut doc: Value = serde_json::from_slice(&seed).expect("seed is JSON");
        // A value of the wrong shape, carrying a number only this case uses.
        let value = match shape {
            0 => Value::String(format!("+1 ({marker}) not a number")),
            1 => Value::String(format!("dana.{marker}@@example")),
            2 => serde_json::json!({ "nested": [format!("x{marker}"), { "v": format!("y{marker}") }] }),
            _ => Value::from(marker.parse::<u64>().expect("digits")),
        };
        set(&mut doc, field, value);
        let bytes = serde_json::to_vec(&doc).expect("json");
        if let Err(errors) = parse_send_request(&bytes) {
            let text = errors.to_string();
            prop_assert!(!text.contains(&marker), "refusal repeats the value: {}", text);
        }
    }

    #[test]
    fn the_send_request_decoder_survives_any_json(value in json_value()) {
        let bytes = serde_json::to_vec(&value).expect("json");
        if let Err(errors) = parse_send_request(&bytes) {
            prop_assert!(REASONS.contains(&errors.reason_code()));
        }
    }

    #[test]
    fn the_incident_decoder_names_a_reason_for_anything(
        bytes in hostile(seeds("incident_event")),
        key in proptest::sample::select(vec![
            "incident.declared", "incident.updated", "incident.facts_verified",
            "incident.resolved", "incident.other", "",
        ]),
    ) {
        match incident::parse(key, &bytes) {
            Ok((kind, event)) => {
                prop_assert_eq!(kind.routing_key(), key);
                prop_assert!(event.sequence >= 1);
                prop_assert!(!event.title.trim().is_empty());
            }
            Err(error) => {
                let text = error.to_string();
                prop_assert!(
                    text.starts_with("invalid_event: ") || text.starts_with("unknown_event_type: "),
                    "unnamed reason: {}", text
                );
            }
        }
    }
}
