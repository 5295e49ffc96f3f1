//! The digest worker's metrics. Labels are bounded: states, reasons and outcome names.

use std::sync::LazyLock;

use prometheus::{HistogramVec, IntCounterVec};

pub struct DigestMetrics {
    /// Digest builds by outcome (`awaiting_approval`, `unchanged`, `blocked`, `published`, `held`).
    pub builds: IntCounterVec,
    /// Report views recorded (`first` or `repeat`), the "report viewed" outcome.
    pub views: IntCounterVec,
    /// Batched events collected (`added`, `duplicate`).
    pub collected: IntCounterVec,
    /// Buckets flushed, by why (`window`, `count`).
    pub flushed: IntCounterVec,
    /// Seconds from a bucket's due time to its flush (0 when flushed for its count).
    pub flush_latency: HistogramVec,
}

pub fn digest() -> &'static DigestMetrics {
    static METRICS: LazyLock<DigestMetrics> = LazyLock::new(|| DigestMetrics {
        builds: comms_runtime::metrics::counter(
            "comms_digest_builds_total",
            "Report digest builds, by outcome",
            &["outcome"],
        ),
        views: comms_runtime::metrics::counter(
            "comms_digest_views_total",
            "Report digest views recorded, first or repeat",
            &["view"],
        ),
        collected: comms_runtime::metrics::counter(
            "comms_digest_batch_events_total",
            "Batched notification events collected, by outcome",
            &["outcome"],
        ),
        flushed: comms_runtime::metrics::counter(
            "comms_digest_batches_flushed_total",
            "Notification batches flushed, by reason",
            &["reason"],
        ),
        flush_latency: comms_runtime::metrics::histogram(
            "comms_digest_flush_latency_seconds",
            "Seconds from a batch's window end to its flush",
            &["reason"],
        ),
    });
    &METRICS
}

/// Counts one flushed bucket.
pub fn flushed(reason: &str, late: chrono::TimeDelta) {
    let m = digest();
    m.flushed.with_label_values(&[reason]).inc();
    let seconds = if reason == "count" {
        0.0
    } else {
        late.as_seconds_f64().max(0.0)
    };
    m.flush_latency
        .with_label_values(&[reason])
        .observe(seconds);
}
