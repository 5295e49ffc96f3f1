//! Replay's unit tests: which headers a replayed dead letter carries.

use super::*;

fn letter(routing_key: &str, headers: serde_json::Value) -> DeadLetter {
    DeadLetter {
        id: 1,
        queue: "ns.comms.inbound".into(),
        routing_key: routing_key.into(),
        reason: String::new(),
        received_at: Utc::now(),
        state: "dead".into(),
        origin: "runtime".into(),
        size: 0,
        preview: String::new(),
        payload: Vec::new(),
        headers,
    }
}

fn text(headers: &FieldTable, name: &str) -> Option<String> {
    comms_runtime::amqp::header_str(headers, name)
}

#[test]
fn a_replay_gives_back_the_fleets_headers_and_the_original_routing_key() {
    let stored = serde_json::json!({
        "x-comms-provider": "twilio",
        "x-comms-content-type": "application/x-www-form-urlencoded",
        "x-comms-retry": 3,
        "x-comms-reason": "database unavailable",
        "x-comms-origin-queue": "ns.comms.inbound",
        "x-death": "[..]",
    });
    let headers = carried_headers(&letter("inbound.twilio", stored));
    assert_eq!(
        text(&headers, "x-comms-provider").as_deref(),
        Some("twilio")
    );
    assert_eq!(
        text(&headers, "x-comms-content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        text(&headers, "x-comms-routing-key").as_deref(),
        Some("inbound.twilio")
    );
    for gone in [
        "x-comms-retry",
        "x-comms-reason",
        "x-comms-origin-queue",
        "x-death",
    ] {
        assert!(!headers.inner().contains_key(gone), "{gone} is not carried");
    }
}

#[test]
fn a_tier_routing_key_is_not_taken_for_the_original() {
    let from_tier = letter("5s.ns.comms.inbound", serde_json::json!({}));
    assert!(text(&carried_headers(&from_tier), "x-comms-routing-key").is_none());
    let kept = letter(
        "5s.ns.comms.inbound",
        serde_json::json!({ "x-comms-routing-key": "inbound.sendgrid" }),
    );
    assert_eq!(
        text(&carried_headers(&kept), "x-comms-routing-key").as_deref(),
        Some("inbound.sendgrid")
    );
}
