//! The worker's Prometheus metrics: events by outcome, notices, time to first notice and to
//! resolution.

use std::sync::LazyLock;

use prometheus::{HistogramVec, IntCounterVec};

use crate::event::EventType;

struct Metrics {
    events: IntCounterVec,
    notices: IntCounterVec,
    first_notice: HistogramVec,
    resolution: HistogramVec,
}

fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
        events: comms_runtime::metrics::counter(
            "comms_incident_events_total",
            "Incident events by type and outcome (accepted, replayed, older)",
            &["type", "outcome"],
        ),
        notices: comms_runtime::metrics::counter(
            "comms_incident_notices_total",
            "Incident notices fanned out, by purpose",
            &["purpose"],
        ),
        first_notice: comms_runtime::metrics::histogram(
            "comms_incident_time_to_first_notice_seconds",
            "From an incident's start to its first notice published",
            &[],
        ),
        resolution: comms_runtime::metrics::histogram(
            "comms_incident_time_to_resolution_seconds",
            "From an incident's start to its resolution",
            &[],
        ),
    });
    &METRICS
}

pub fn events(kind: EventType, outcome: &str) {
    metrics()
        .events
        .with_label_values(&[kind.as_str(), outcome])
        .inc();
}

pub fn notices(purpose: &str) {
    metrics().notices.with_label_values(&[purpose]).inc();
}

pub fn time_to_first_notice(seconds: f64) {
    metrics()
        .first_notice
        .with_label_values::<&str>(&[])
        .observe(seconds);
}

pub fn time_to_resolution(seconds: f64) {
    metrics()
        .resolution
        .with_label_values::<&str>(&[])
        .observe(seconds);
}
