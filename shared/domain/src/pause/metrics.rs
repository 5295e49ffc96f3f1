//! The pause metrics: active pauses, blindness, staleness, apply time and held messages. Apart
//! from the switch and the release that both observe them, so neither depends on the other.

use std::sync::LazyLock;

use prometheus::{GaugeVec, HistogramVec, IntGaugeVec};

pub struct PauseMetrics {
    pub active: IntGaugeVec,
    pub blind: IntGaugeVec,
    pub staleness_seconds: GaugeVec,
    pub apply_seconds: HistogramVec,
    pub held: IntGaugeVec,
    /// Age of the oldest held message, in seconds (0 when nothing is held).
    pub oldest_held_seconds: GaugeVec,
}

pub fn metrics() -> &'static PauseMetrics {
    static METRICS: LazyLock<PauseMetrics> = LazyLock::new(|| PauseMetrics {
        active: comms_runtime::metrics::gauge(
            "comms_pause_active",
            "Active pauses by scope",
            &["scope"],
        ),
        blind: comms_runtime::metrics::gauge(
            "comms_pause_blind",
            "1 while this worker cannot confirm the pause switch and refuses to send",
            &[],
        ),
        staleness_seconds: comms_runtime::metrics::float_gauge(
            "comms_pause_staleness_seconds",
            "Seconds since this worker last confirmed the pause switch",
            &[],
        ),
        apply_seconds: comms_runtime::metrics::histogram(
            "comms_pause_apply_seconds",
            "Time from a pause change being committed to this worker applying it",
            &[],
        ),
        held: comms_runtime::metrics::gauge("comms_messages_held", "Messages held by a pause", &[]),
        oldest_held_seconds: comms_runtime::metrics::float_gauge(
            "comms_messages_held_oldest_seconds",
            "Age of the oldest message held by a pause, in seconds",
            &[],
        ),
    });
    &METRICS
}
