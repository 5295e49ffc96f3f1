//! The one place logging and tracing are set up.
//!
//! Policy (see docs/operations.md): `error` is for what an operator must act on, `warn` for what
//! the fleet recovered from, `info` for lifecycle and per-message outcomes, `debug` for detail.
//! The AMQP client's own events are off unless the filter names them ([`filter_directives`]): it
//! logs ERROR for a lost connection the fleet then recovers from (and reports itself, at warn),
//! and WARN with the whole content of a message the broker returned.
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

/// The AMQP client's crates, whose own events are off by default.
const AMQP_CLIENT_TARGETS: [&str; 2] = ["lapin", "amq_protocol"];

/// The filter a process logs with: `configured` (`RUST_LOG`, else `log.level`), plus
/// `<target>=off` for each AMQP client crate it does not name itself. Every broker failure the
/// fleet handles is logged by the fleet at the policy's level, so nothing is lost; write
/// `lapin=debug` into the filter to see the client's own events.
pub fn filter_directives(configured: &str) -> String {
    let mut directives = configured.trim().to_string();
    for target in AMQP_CLIENT_TARGETS {
        if !directives.contains(target) {
            if !directives.is_empty() {
                directives.push(',');
            }
            directives.push_str(target);
            directives.push_str("=off");
        }
    }
    directives
}

/// The filter from `RUST_LOG` if it is set and valid, else from `level`, else `info`.
fn env_filter(level: &str) -> EnvFilter {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .and_then(|value| EnvFilter::try_new(filter_directives(&value)).ok())
        .or_else(|| EnvFilter::try_new(filter_directives(level)).ok())
        .unwrap_or_else(|| EnvFilter::new(filter_directives("info")))
}

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

    let filter = env_filter(&settings.level);
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::Level;
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::{EnvFilter, Layer};

    use super::filter_directives;

    /// Keeps the level and target of every event that passes the filter.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<(Level, String)>>>);

    impl<S: tracing::Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let meta = event.metadata();
            if let Ok(mut seen) = self.0.lock() {
                seen.push((*meta.level(), meta.target().to_string()));
            }
        }
    }

    fn logged_with(directives: &str) -> Vec<(Level, String)> {
        let seen = Seen::default();
        let filter = EnvFilter::new(filter_directives(directives));
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "lapin::channels", "Connection error");
            tracing::warn!(target: "lapin::returned_messages", "Server returned us a message");
            tracing::error!(target: "amq_protocol_tcp", "connection refused");
            tracing::warn!(target: "comms_runtime::runtime::consumer", "consumer lost; reconnecting");
        });
        seen.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    #[test]
    fn the_amqp_client_is_silent_unless_the_filter_names_it() {
        assert_eq!(filter_directives("info"), "info,lapin=off,amq_protocol=off");
        assert_eq!(
            logged_with("info"),
            vec![(Level::WARN, "comms_runtime::runtime::consumer".to_string())],
            "no ERROR for a disconnect the fleet recovers from, and no returned message content"
        );
        assert_eq!(
            filter_directives("warn,lapin=debug"),
            "warn,lapin=debug,amq_protocol=off"
        );
        assert_eq!(logged_with("warn,lapin=debug").len(), 3);
    }
}
