//! The gateway's own metrics, next to the shared ones on `/metrics`. Labels are bounded: provider,
//! kind and outcome names, never ids or addresses.

use std::sync::LazyLock;

use prometheus::IntCounterVec;

pub struct GatewayMetrics {
    /// Webhook requests by provider, kind (`status`, `inbound`) and outcome (`accepted`,
    /// `missing_signature`, `invalid_signature`, `stale_timestamp`, `no_key`, `not_found`,
    /// `too_large`, `broker_unavailable`).
    pub webhooks: IntCounterVec,
    /// Enqueue API requests by outcome (`accepted`, `duplicate`, `invalid`, `broker_unavailable`).
    pub enqueue: IntCounterVec,
    /// Report-view links opened, by outcome: `first` (the "report viewed" outcome: a contact's
    /// first view of a digest), `repeat`, `forged`, `expired`, `unknown`, `unavailable`.
    pub digest_views: IntCounterVec,
    /// Tracked review links followed, by outcome: `first` (the `clicked` review outcome),
    /// `repeat`, `forged`, `expired`, `unknown`, `unavailable`.
    pub review_links: IntCounterVec,
}

pub fn gateway() -> &'static GatewayMetrics {
    static METRICS: LazyLock<GatewayMetrics> = LazyLock::new(|| GatewayMetrics {
        webhooks: comms_runtime::metrics::counter(
            "comms_gateway_webhooks_total",
            "Provider webhook requests, by provider, kind and outcome",
            &["provider", "kind", "outcome"],
        ),
        enqueue: comms_runtime::metrics::counter(
            "comms_gateway_enqueue_total",
            "Enqueue API requests, by outcome",
            &["outcome"],
        ),
        digest_views: comms_runtime::metrics::counter(
            "comms_gateway_digest_views_total",
            "Report-view links opened, by outcome (first = a contact's first view of a digest)",
            &["outcome"],
        ),
        review_links: comms_runtime::metrics::counter(
            "comms_gateway_review_links_total",
            "Tracked review links followed, by outcome (first = the message's clicked outcome)",
            &["outcome"],
        ),
    });
    &METRICS
}
