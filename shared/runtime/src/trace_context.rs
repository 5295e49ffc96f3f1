//! W3C trace context carried in AMQP headers, so one trace follows a message across queue hops.
//!
//! Publishers inject the current span's context into the headers; consumers extract it and make
//! the handler's span its child (or, for a span that decides a whole group, link to each). Retries and dead-lettering copy the incoming headers, so the
//! context survives those hops too.
//!
//! A message's own context is also stored with it (`comms.messages.traceparent`), because some
//! steps of its life arrive without it — a delivery callback, a reply, an approval decision, the
//! release after a pause. Each such step is a [`message_step`]: a child of the stored context,
//! linked to the trace it was handled in (docs/operations.md#a-messages-trace).

use std::collections::HashMap;

use lapin::types::{AMQPValue, FieldTable, ShortString};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderInjector<'a>(&'a mut FieldTable);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(
            ShortString::from(key.to_ascii_lowercase()),
            AMQPValue::LongString(value.into()),
        );
    }
}

struct HeaderExtractor(HashMap<String, String>);

impl Extractor for HeaderExtractor {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Adds the current span's trace context to `headers`.
pub fn inject_current(headers: &mut FieldTable) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Makes `span` a child of the trace context found in `headers`, if any.
pub fn set_parent_from(headers: &FieldTable, span: &tracing::Span) {
    if let Some(context) = extract(headers) {
        let _ = span.set_parent(context);
    }
}

/// Links `span` to the trace context found in `headers`, if any: how a span that works for a
/// whole group of messages (each with its own trace) points at every one of them.
pub fn link_from(headers: &FieldTable, span: &tracing::Span) {
    if let Some(context) = extract(headers) {
        let linked = context.span().span_context().clone();
        if linked.is_valid() {
            span.add_link(linked);
        }
    }
}

/// Adds `span`'s trace context to `headers`.
pub fn inject_span(span: &tracing::Span, headers: &mut FieldTable) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// The current span's context as a W3C `traceparent` value, to store with a record (a message)
/// so a worker that later handles it without its headers can continue the same trace.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// `span`'s context as a W3C `traceparent` value (see [`current_traceparent`]).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut headers = FieldTable::default();
    inject_span(span, &mut headers);
    match headers.inner().get("traceparent") {
        Some(AMQPValue::LongString(value)) => Some(value.to_string()),
        _ => None,
    }
}

/// Makes `span` a child of the W3C trace context an HTTP caller sent (`traceparent`, with its
/// `tracestate`), if any: how a request to the gateway joins its caller's trace.
pub fn set_parent_from_http(headers: &http::HeaderMap, span: &tracing::Span) {
    let mut table = FieldTable::default();
    for name in ["traceparent", "tracestate"] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            table.insert(name.into(), AMQPValue::LongString(value.into()));
        }
    }
    set_parent_from(&table, span);
}

/// A span for one step of a message's life that is handled apart from the message's own trace —
/// its delivery callback, a reply to it, an approval decision, a release after a pause — named
/// `step`. Its parent is the message's stored `traceparent`, so the step is in the message's
/// trace; it links to the span it was handled in (the current one, itself in the trace of the
/// callback or request that caused the step), so that trace can be followed too. Without a
/// valid stored context it is simply a child of the current span.
pub fn message_step(
    step: &'static str,
    message_id: uuid::Uuid,
    traceparent: Option<&str>,
) -> tracing::Span {
    let span = tracing::info_span!("message.step", otel.name = step, message.id = %message_id);
    let Some(stored) = traceparent.and_then(|tp| extract(&stored(tp))) else {
        return span;
    };
    let parent = stored.span().span_context().clone();
    if !parent.is_valid() {
        return span;
    }
    let handled_in = tracing::Span::current()
        .context()
        .span()
        .span_context()
        .clone();
    let _ = span.set_parent(stored);
    if handled_in.is_valid() && handled_in.trace_id() != parent.trace_id() {
        span.add_link(handled_in);
    }
    span
}

/// Makes `span` a child of a stored `traceparent` (see [`current_traceparent`]), if valid.
pub fn set_parent_from_traceparent(traceparent: &str, span: &tracing::Span) {
    set_parent_from(&stored(traceparent), span);
}

/// Links `span` to a stored `traceparent`, if valid: for a span already in another trace.
pub fn link_from_traceparent(traceparent: &str, span: &tracing::Span) {
    link_from(&stored(traceparent), span);
}

/// A stored `traceparent` as the headers it would have travelled in.
fn stored(traceparent: &str) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(traceparent.to_string().into()),
    );
    headers
}

fn extract(headers: &FieldTable) -> Option<opentelemetry::Context> {
    let fields: HashMap<String, String> = headers
        .inner()
        .iter()
        .filter_map(|(k, v)| match v {
            AMQPValue::LongString(s) => Some((k.to_string(), s.to_string())),
            AMQPValue::ShortString(s) => Some((k.to_string(), s.to_string())),
            _ => None,
        })
        .collect();
    if !fields.contains_key("traceparent") {
        return None;
    }
    let extractor = HeaderExtractor(fields);
    Some(opentelemetry::global::get_text_map_propagator(
        |propagator| propagator.extract(&extractor),
    ))
}
