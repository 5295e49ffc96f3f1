//! The one place logging and tracing are set up.
//!
//! Policy (see docs/operations.md): `error` is for what an operator must act on, `warn` for what
//! the fleet recovered from, `info` for lifecycle and per-message outcomes, `debug` for detail.
//! Fields are dotted (`message.id`, `queue.name`). Message bodies, addresses, URLs with
//! credentials and provider tokens are never logged. Trace context travels across queue hops as
//! W3C `traceparent` headers (see [`crate::trace_context`]); spans are exported to a collector
//! over OTLP/HTTP when one is configured ([`otlp`]).

mod otlp;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{LogFormat, LogSettings};

/// The variables with which OpenTelemetry names a collector without our settings.
const OTEL_ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// What [`init`] installed. Call [`Telemetry::shutdown`] when the process ends, so spans still
/// waiting in the batch are sent.
#[must_use = "keep it until the process ends, then call shutdown() to flush spans"]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Whether spans are exported to a collector.
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }

    /// [`Telemetry::shutdown`] from async code (on a blocking thread).
    pub async fn finish(self) {
        let _ = tokio::task::spawn_blocking(move || self.shutdown()).await;
    }

    /// Sends the spans still batched and stops the exporter. Blocks until the collector answered
    /// or the export timed out: in async code use [`Telemetry::finish`].
    pub fn shutdown(self) {
        if self.exporting
            && let Err(error) = self.provider.shutdown()
        {
            tracing::warn!(%error, "could not flush the last spans to the collector");
        }
    }
}

/// Installs the global subscriber and the W3C trace-context propagator, and, when a collector is
/// configured (`log.otlp_endpoint` or the standard `OTEL_EXPORTER_OTLP_*ENDPOINT`), a batch
/// exporter of spans over OTLP/HTTP. Safe to call twice (the second call installs nothing new),
/// which tests rely on.
pub fn init(settings: &LogSettings, service: &'static str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let configured = settings.otlp_endpoint.as_deref().filter(|e| !e.is_empty());
    let wanted = configured.is_some()
        || OTEL_ENDPOINT_VARS
            .iter()
            .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty()));
    let resource = Resource::builder().with_service_name(service).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let mut export_error = None;
    if wanted {
        match otlp::exporter(configured) {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(error) => export_error = Some(error),
        }
    }
    let exporting = wanted && export_error.is_none();
    let provider = builder.build();
    let tracer = provider.tracer(service);
    opentelemetry::global::set_tracer_provider(provider.clone());

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
    if let Some(error) = export_error {
        tracing::warn!(%error, "traces are not exported: the OTLP exporter could not be built");
    } else if exporting {
        // The collector's URL is not logged: it may carry credentials.
        tracing::info!("exporting traces over OTLP/HTTP");
    }
    Telemetry {
        provider,
        exporting,
    }
}
