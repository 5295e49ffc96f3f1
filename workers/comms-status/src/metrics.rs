//! The status worker's metrics. Labels are bounded: provider, outcome and channel names.

use std::sync::LazyLock;

use prometheus::{GaugeVec, IntCounterVec};

pub struct StatusMetrics {
    /// Status events by provider and outcome (`applied`, `recorded`, `duplicate`, `unknown`,
    /// `not_yet_sent`, `invalid`).
    pub events: IntCounterVec,
    /// Delivery states messages moved to, by provider (`delivered`, `undelivered`, `failed`, …):
    /// the provider's failure rate.
    pub moved_to: IntCounterVec,
    /// Callbacks parked because no message matched them in time, by provider.
    pub parked: IntCounterVec,
    /// Channels paused by the freshness watchdog.
    pub auto_pauses: IntCounterVec,
    /// Messages the reconciler asked a provider about, by provider and outcome (`moved`,
    /// `unknown_delivery`, `unchanged`, `error`).
    pub reconciled: IntCounterVec,
    /// Share of the messages dispatched between two freshness windows and one ago still without
    /// a final status, by channel (the partial-loss check).
    pub missing_share: GaugeVec,
    /// Partial-loss tasks opened, by channel.
    pub partial_losses: IntCounterVec,
}

pub fn status() -> &'static StatusMetrics {
    static METRICS: LazyLock<StatusMetrics> = LazyLock::new(|| StatusMetrics {
        events: comms_runtime::metrics::counter(
            "comms_status_events_total",
            "Provider status events, by provider and outcome",
            &["provider", "outcome"],
        ),
        moved_to: comms_runtime::metrics::counter(
            "comms_delivery_states_total",
            "Delivery states messages moved to on a provider's callback, by provider and state",
            &["provider", "state"],
        ),
        parked: comms_runtime::metrics::counter(
            "comms_status_unknown_parked_total",
            "Status callbacks parked because no message matched them in time",
            &["provider"],
        ),
        auto_pauses: comms_runtime::metrics::counter(
            "comms_status_auto_pauses_total",
            "Channels paused automatically because provider freshness was uncertain",
            &["channel"],
        ),
        reconciled: comms_runtime::metrics::counter(
            "comms_status_reconciled_total",
            "Messages sent without a final status that the reconciler asked their provider about, by provider and outcome",
            &["provider", "outcome"],
        ),
        missing_share: comms_runtime::metrics::float_gauge(
            "comms_status_missing_status_ratio",
            "Share of a channel's messages dispatched one to two freshness windows ago that still have no final status",
            &["channel"],
        ),
        partial_losses: comms_runtime::metrics::counter(
            "comms_status_partial_loss_total",
            "Owner tasks opened because part of a channel's messages had no delivery status",
            &["channel"],
        ),
    });
    &METRICS
}
