//! A fake OpenTelemetry collector: an HTTP server on a free local port that takes OTLP/HTTP
//! protobuf exports (`POST /v1/traces`) and keeps every span, decoded, for the test to read.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// One exported span, as the collector received it (ids in hex).
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// String attributes (`message.id`, `queue.name`, …).
    pub attributes: Vec<(String, String)>,
    /// The trace ids this span links to.
    pub linked_traces: Vec<String>,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

type Received = Arc<Mutex<Vec<Span>>>;

pub struct Collector {
    pub endpoint: String,
    received: Received,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn export(State(received): State<Received>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            let attributes = span
                .attributes
                .iter()
                .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
                    _ => None,
                })
                .collect();
            spans.push(Span {
                trace_id: hex(&span.trace_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name,
                attributes,
                linked_traces: span.links.iter().map(|l| hex(&l.trace_id)).collect(),
            });
        }
    }
    if let Ok(mut received) = received.lock() {
        received.extend(spans);
    }
    StatusCode::OK
}

impl Collector {
    pub async fn start() -> Self {
        let received = Received::default();
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            endpoint: format!("http://{address}"),
            received,
        }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.received.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The trace of the span named `name` whose `message.id` is `message_id`.
    pub fn trace_of(&self, name: &str, message_id: &str) -> Option<String> {
        self.spans()
            .into_iter()
            .find(|s| s.name == name && s.attribute("message.id") == Some(message_id))
            .map(|s| s.trace_id)
    }

    /// Every span of `trace`.
    pub fn in_trace(&self, trace: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect()
    }

    /// The names of the spans of `trace`.
    pub fn names(&self, trace: &str) -> BTreeSet<String> {
        self.in_trace(trace).into_iter().map(|s| s.name).collect()
    }
}
