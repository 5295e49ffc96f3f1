//! Spans reach an OpenTelemetry collector over OTLP/HTTP when one is configured. Its own test
//! binary, because the tracing subscriber is global to a process.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use comms_runtime::settings::LogSettings;
use lapin::types::{AMQPValue, FieldTable};

/// The trace of a message that a group span links to.
const LINKED_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn collect(State(received): State<Received>, headers: HeaderMap, body: Bytes) {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    received
        .lock()
        .expect("lock")
        .push((content_type, body.to_vec()));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_to_the_configured_collector() {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let collector = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let settings = LogSettings {
        otlp_endpoint: Some(format!("http://{collector}")),
        ..LogSettings::default()
    };
    let telemetry = comms_runtime::telemetry::init(&settings, "comms-otlp-test");
    assert!(telemetry.is_exporting());
    {
        let span = tracing::info_span!("message", queue.name = "comms.send.sms");
        let _entered = span.enter();
        tracing::info!("handled");
    }
    // A span deciding a group links to each message's own trace.
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(format!("00-{LINKED_TRACE}-00f067aa0ba902b7-01").into()),
    );
    let group = tracing::info_span!("group");
    comms_runtime::trace_context::link_from(&headers, &group);
    drop(group);
    // Flushing on shutdown is what sends the batch: nothing is waited for by time.
    telemetry.finish().await;

    let received = received.lock().expect("lock").clone();
    assert_eq!(received.len(), 1, "one batch reached the collector");
    let (content_type, body) = &received[0];
    assert_eq!(content_type, "application/x-protobuf");
    assert!(
        contains(body, b"comms-otlp-test"),
        "service.name is in the resource"
    );
    assert!(contains(body, b"message"), "the span is in the batch");
    assert!(contains(body, b"comms.send.sms"), "with its attributes");
    assert!(contains(body, b"group"), "the group's span too");
    let linked: Vec<u8> = (0..LINKED_TRACE.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&LINKED_TRACE[i..i + 2], 16).expect("hex"))
        .collect();
    assert!(contains(body, &linked), "linked to the message's trace");
}
