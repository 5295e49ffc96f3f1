//! The one place logging and tracing are set up.
//!
//! Policy (see docs/operations.md): `error` is for what an operator must act on, `warn` for what
//! the fleet recovered from, `info` for lifecycle and per-message outcomes, `debug` for detail.
//! Fields are dotted (`message.id`, `queue.name`). Message bodies, addresses, URLs with
//! credentials and provider tokens are never logged. Trace context travels across queue hops as
//! W3C `traceparent` headers (see [`crate::trace_context`]).

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber and the W3C trace-context propagator. Safe to call twice
/// (the second call is a no-op), which tests rely on.
pub fn init(settings: &LogSettings, service: &'static str) {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer(service);
    opentelemetry::global::set_tracer_provider(provider);

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init();
}
