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

/// The delivery states a message does not leave: where its life (and its enqueue-to-final time)
/// ends.
pub const FINAL_STATES: [&str; 4] = ["delivered", "undelivered", "failed", "blocked"];

/// Metrics of a message's life, observed by whichever worker makes the move they measure.
pub struct LifecycleMetrics {
    /// Seconds from a message being recorded to its final state, by channel and final state.
    pub enqueue_to_final_seconds: HistogramVec,
    /// Seconds a dispatch waited for the rate limit (local pacing and fleet budget), by channel.
    pub rate_limit_wait_seconds: HistogramVec,
}

fn histogram_with(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    register(
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}")),
    )
}

pub fn lifecycle() -> &'static LifecycleMetrics {
    static METRICS: LazyLock<LifecycleMetrics> = LazyLock::new(|| LifecycleMetrics {
        // From seconds (a delivered SMS) to a day (an approval that waited, then expired).
        enqueue_to_final_seconds: histogram_with(
            "comms_enqueue_to_final_seconds",
            "Time from a message being recorded to its final delivery state, by channel and state",
            &["channel", "state"],
            vec![
                0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
            ],
        ),
        // From nothing (a token was there) to the seconds a saturated limit makes a dispatch wait.
        rate_limit_wait_seconds: histogram_with(
            "comms_rate_limit_wait_seconds",
            "Time a dispatch waited for its channel's rate limit",
            &["channel"],
            vec![
                0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        ),
    });
    &METRICS
}

/// A channel as a label value: one of the contract's channels, anything else `other`.
fn channel_label(channel: &str) -> &str {
    match channel {
        "sms" | "email" | "portal" => channel,
        _ => "other",
    }
}

/// Observes a message of `channel`, recorded at `created_at`, moving to `state`, if that state
/// is final ([`FINAL_STATES`]); other states are not observed.
pub fn observe_final(channel: &str, state: &str, created_at: chrono::DateTime<chrono::Utc>) {
    if let Some(state) = FINAL_STATES.iter().find(|s| **s == state) {
        let seconds = (chrono::Utc::now() - created_at).num_milliseconds().max(0) as f64 / 1000.0;
        lifecycle()
            .enqueue_to_final_seconds
            .with_label_values(&[channel_label(channel), state])
            .observe(seconds);
    }
}

/// Observes one dispatch of `channel` that waited `waited` for the rate limit.
pub fn observe_rate_wait(channel: &str, waited: std::time::Duration) {
    lifecycle()
        .rate_limit_wait_seconds
        .with_label_values(&[channel_label(channel)])
        .observe(waited.as_secs_f64());
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
