//! One trace follows a message across queue hops: the context a publisher put in the AMQP
//! headers becomes the parent of the consumer's span, and what that span publishes next (a retry,
//! a dead letter, a follow-up message) carries the same trace on. Its own test binary, because the
//! tracing subscriber is global to a process.

use comms_runtime::settings::LogSettings;
use comms_runtime::trace_context::{
    current_traceparent, inject_current, set_parent_from, set_parent_from_traceparent,
};
use lapin::types::{AMQPValue, FieldTable};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const UPSTREAM_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(headers: &FieldTable) -> Option<String> {
    match headers.inner().get("traceparent") {
        Some(AMQPValue::LongString(value)) => Some(value.to_string()),
        _ => None,
    }
}

#[test]
fn the_upstream_trace_is_continued_by_the_consumer_and_passed_on() {
    let _telemetry = comms_runtime::telemetry::init(&LogSettings::default(), "comms-trace-test");
    let mut incoming = FieldTable::default();
    incoming.insert(
        "traceparent".into(),
        AMQPValue::LongString(format!("00-{TRACE_ID}-{UPSTREAM_SPAN}-01").into()),
    );

    let span = tracing::info_span!("message");
    set_parent_from(&incoming, &span);
    let mut outgoing = FieldTable::default();
    span.in_scope(|| inject_current(&mut outgoing));

    let passed_on = traceparent(&outgoing).expect("the next hop gets a traceparent");
    let parts: Vec<&str> = passed_on.split('-').collect();
    assert_eq!(parts.len(), 4, "{passed_on}");
    assert_eq!(parts[1], TRACE_ID, "the same trace");
    assert_ne!(
        parts[2], UPSTREAM_SPAN,
        "the consumer's own span is the new parent"
    );
    assert_eq!(parts[3], "01", "still sampled");

    // The context stored with a message continues its trace in a later worker.
    let stored = span
        .in_scope(current_traceparent)
        .expect("the recording span has a context to store");
    assert_eq!(stored, passed_on, "what is stored is what is passed on");
    let later = tracing::info_span!("status update");
    set_parent_from_traceparent(&stored, &later);
    let continued = later
        .in_scope(current_traceparent)
        .expect("the later span has a context");
    assert!(continued.contains(TRACE_ID), "{continued}");
    assert_ne!(continued, stored, "a span of its own, in the same trace");

    // Without a traceparent, a message starts a trace of its own.
    let fresh = tracing::info_span!("message");
    set_parent_from(&FieldTable::default(), &fresh);
    let mut next = FieldTable::default();
    fresh.in_scope(|| inject_current(&mut next));
    let started = traceparent(&next).expect("a new trace is passed on too");
    assert!(!started.contains(TRACE_ID), "{started}");
}
