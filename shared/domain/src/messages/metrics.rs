//! Metrics of a message's life — enqueue to final state, and the wait for a rate limit — observed
//! by whichever worker makes the move they measure (sender, status worker, approvals).

use prometheus::HistogramVec;
use std::sync::LazyLock;

use comms_runtime::metrics::histogram_with;

use super::DeliveryState;

/// Metrics of a message's life, observed by whichever worker makes the move they measure.
pub struct LifecycleMetrics {
    /// Seconds from a message being recorded to its final state, by channel and final state.
    pub enqueue_to_final_seconds: HistogramVec,
    /// Seconds a dispatch waited for the rate limit (local pacing and fleet budget), by channel.
    pub rate_limit_wait_seconds: HistogramVec,
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
/// is final ([`DeliveryState::FINAL`]); other states are not observed.
pub fn observe_final(channel: &str, state: &str, created_at: chrono::DateTime<chrono::Utc>) {
    if let Some(state) = state
        .parse::<DeliveryState>()
        .ok()
        .filter(|s| s.is_final())
        .map(DeliveryState::as_str)
    {
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
