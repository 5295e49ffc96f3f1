//! Prometheus metrics every process exposes on `/metrics`.
//!
//! Label values are bounded (queue names, outcome names, channels), never message ids or
//! addresses, so the series count stays small whatever the traffic.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The process-wide registry; workers register their own metrics here too.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);
    &REGISTRY
}

fn register<C: prometheus::core::Collector + Clone + 'static>(collector: C) -> C {
    // Registration only fails for a duplicate name, which would be a programming error caught by
    // the first test that renders metrics; keep the collector working either way.
    let _ = registry().register(Box::new(collector.clone()));
    collector
}

/// Builds and registers a counter family.
pub fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| {
            panic!("metric {name} is malformed: {e}");
        }),
    )
}

/// Builds and registers a gauge family.
pub fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| {
            panic!("metric {name} is malformed: {e}");
        }),
    )
}

/// Builds and registers a floating-point gauge family.
pub fn float_gauge(name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
    register(
        prometheus::GaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| {
            panic!("metric {name} is malformed: {e}");
        }),
    )
}

/// Builds and registers a histogram family (seconds).
pub fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    register(
        HistogramVec::new(HistogramOpts::new(name, help), labels).unwrap_or_else(|e| {
            panic!("metric {name} is malformed: {e}");
        }),
    )
}

/// Metrics of the shared consumer runtime.
pub struct ConsumerMetrics {
    /// Messages handled, by queue and outcome (`ack`, `retry`, `reject`, `panic`, `requeue`).
    pub handled: IntCounterVec,
    /// Time spent in the handler, by queue.
    pub handler_seconds: HistogramVec,
    /// 1 while a consumer is attached to its queue.
    pub connected: IntGaugeVec,
    /// Reconnect attempts after a broker or channel failure, by queue.
    pub reconnects: IntCounterVec,
    /// How long first deliveries waited in their queue (from the publisher's AMQP timestamp, whole
    /// seconds), by queue: the queue's age as consumers see it.
    pub queue_wait_seconds: HistogramVec,
}

pub fn consumer() -> &'static ConsumerMetrics {
    static METRICS: LazyLock<ConsumerMetrics> = LazyLock::new(|| ConsumerMetrics {
        handled: counter(
            "comms_messages_handled_total",
            "Messages handled by a consumer, by queue and outcome",
            &["queue", "outcome"],
        ),
        handler_seconds: histogram(
            "comms_handler_seconds",
            "Time a handler spent on one message",
            &["queue"],
        ),
        connected: gauge(
            "comms_consumer_connected",
            "1 while the consumer of a queue is attached",
            &["queue"],
        ),
        reconnects: counter(
            "comms_consumer_reconnects_total",
            "Consumer restarts after a broker or channel failure",
            &["queue"],
        ),
        queue_wait_seconds: register(
            HistogramVec::new(
                HistogramOpts::new(
                    "comms_queue_wait_seconds",
                    "How long a message waited in its queue before its first delivery",
                )
                .buckets(vec![
                    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                ]),
                &["queue"],
            )
            .unwrap_or_else(|e| panic!("metric comms_queue_wait_seconds is malformed: {e}")),
        ),
    });
    &METRICS
}

/// Builds and registers a histogram family with its own buckets.
pub fn histogram_with(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    register(
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}")),
    )
}

/// Renders every registered metric in the Prometheus text format.
pub fn render() -> String {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&registry().gather(), &mut buffer) {
        tracing::warn!(error = %e, "metrics could not be encoded");
    }
    String::from_utf8(buffer).unwrap_or_default()
}
