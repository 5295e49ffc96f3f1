//! The fleet's traces during the chaos run: a collector on a free loopback port takes every
//! OTLP/HTTP export (`POST /v1/traces`, protobuf) the workers send, and appends the text of each
//! span — its name, every string or integer attribute, its events with theirs, its status message
//! — as one line to a file, which the privacy check then searches like a log.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

#[derive(Clone)]
struct Sink {
    file: Arc<Mutex<std::fs::File>>,
    spans: Arc<AtomicU64>,
}

pub struct Traces {
    /// The base URL to give the workers (`COMMS__LOG__OTLP_ENDPOINT`).
    pub endpoint: String,
    pub path: PathBuf,
    spans: Arc<AtomicU64>,
}

impl Traces {
    pub async fn start(path: PathBuf) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("trace file");
        let sink = Sink {
            file: Arc::new(Mutex::new(file)),
            spans: Arc::default(),
        };
        let spans = sink.spans.clone();
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(sink);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            endpoint: format!("http://{address}"),
            path,
            spans,
        }
    }

    /// Spans received so far.
    pub fn spans(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }
}

fn text(attributes: &[KeyValue], out: &mut String) {
    for kv in attributes {
        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => s.clone(),
            Some(Value::IntValue(i)) => i.to_string(),
            _ => continue,
        };
        out.push_str(&format!(" {}={value}", kv.key));
    }
}

async fn export(State(sink): State<Sink>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut lines = String::new();
    let mut count = 0;
    for resource in request.resource_spans {
        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
            count += 1;
            lines.push_str(&span.name);
            text(&span.attributes, &mut lines);
            for event in &span.events {
                lines.push_str(&format!(" | event {}", event.name));
                text(&event.attributes, &mut lines);
            }
            if let Some(status) = span.status.as_ref().filter(|s| !s.message.is_empty()) {
                lines.push_str(&format!(" | status {}", status.message));
            }
            lines.push('\n');
        }
    }
    sink.spans.fetch_add(count, Ordering::Relaxed);
    if let Ok(mut file) = sink.file.lock() {
        let _ = file.write_all(lines.as_bytes());
    }
    StatusCode::OK
}
