//! The sender's state, which both of its paths (one message, and a group decided together) work
//! with: the database pool, settings, providers, rate limits, clock, quiet-hours window, pause
//! switch and breaker; and the per-stage timing both paths report.

use std::sync::Arc;

use chrono_tz::Tz;
use comms_domain::pause::switch::PauseSwitch;
use comms_runtime::clock::Clock;
use comms_runtime::settings::Settings;
use sqlx::PgPool;

use crate::providers::Providers;
use crate::quiet_hours::Window;
use crate::rate::RateLimits;

/// The sender's message handler, shared by the consumers of every `comms.send.*` queue.
pub struct SendHandler {
    pub(crate) pool: PgPool,
    pub(crate) settings: Arc<Settings>,
    pub(crate) providers: Providers,
    pub(crate) limits: RateLimits,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) window: Window,
    pub(crate) default_zone: Tz,
    pub(crate) switch: PauseSwitch,
    pub(crate) breaker: crate::breaker::Breaker,
}

/// Time spent per pipeline stage (`make bench` reads it for the cost-of-correctness breakdown).
pub(crate) fn stage(name: &str, since: std::time::Instant) -> std::time::Instant {
    static STAGES: std::sync::LazyLock<prometheus::HistogramVec> = std::sync::LazyLock::new(|| {
        comms_runtime::metrics::histogram(
            "comms_sender_stage_seconds",
            "Time one message spends in each sender stage",
            &["stage"],
        )
    });
    STAGES
        .with_label_values(&[name])
        .observe(since.elapsed().as_secs_f64());
    std::time::Instant::now()
}
