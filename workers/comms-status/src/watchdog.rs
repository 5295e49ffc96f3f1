//! The provider freshness watchdog: when a channel's provider stops telling us what happened to
//! the messages we gave it, keep sending is flying blind, so the channel is paused automatically
//! and a person is asked to look.
//!
//! A channel is stale when it has messages in `sent` or `unknown_delivery` (through a provider
//! that sends callbacks: Twilio, SendGrid) dispatched longer than `status.freshness_window` ago,
//! and not one status callback for that channel arrived within the window (a status the
//! reconciler fetched is not a callback: it says nothing about whether callbacks still arrive). Messages dispatched before the channel's
//! last resume do not count, so an on-call engineer's resume is not undone at the next tick by
//! the same old messages. A channel that already has a pause is left alone.
//!
//! The pause is written the way the pause switch expects — one transaction inserting into
//! `comms.pauses` (scope `channel`, `automatic = true`) and `comms.pause_events` (`pause`), an
//! owner task, and a `pg_notify` on `comms_pause` so workers learn of it at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::metrics;
use crate::store::ACTOR;

/// The reason every automatic freshness pause carries.
pub const FRESHNESS_REASON: &str = "automatic: provider freshness uncertain";
/// Who gets the task when a channel is paused, unless the caller names someone else.
pub const DEFAULT_OWNER: &str = "on-call";
/// The notification channel the pause switch listens on.
pub use comms_domain::pause::NOTIFY_CHANNEL as PAUSE_NOTIFY_CHANNEL;

/// A channel the watchdog just paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutoPause {
    pub pause_id: Uuid,
    pub channel: String,
    /// Sent messages older than the window, still without any status.
    pub stale_messages: i64,
    pub oldest_dispatch: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Stale {
    channel: String,
    stale: i64,
    oldest: DateTime<Utc>,
}

/// The channels with messages awaiting a status since before `$1` (and since the channel's last
/// resume), while no callback for that channel arrived since `$1` and no pause covers it. It reads
/// `messages_awaiting_status_idx` (migration 0029): the messages awaiting a status, not the table.
pub const STALE: &str = "SELECT m.channel, count(*) AS stale, min(m.dispatched_at) AS oldest
    FROM comms.messages m
    WHERE m.delivery_state IN ('sent', 'unknown_delivery')
      AND m.provider IN ('twilio', 'sendgrid')
      AND m.dispatched_at < $1
      AND m.dispatched_at > COALESCE(
            (SELECT max(e.occurred_at) FROM comms.pause_events e
             WHERE e.scope = 'channel' AND e.scope_value = m.channel
               AND e.action IN ('resume', 'expire')),
            '-infinity')
      AND NOT EXISTS (SELECT 1 FROM comms.delivery_callbacks cb
                      WHERE cb.channel = m.channel AND cb.received_at >= $1
                        AND cb.via = 'callback')
      AND NOT EXISTS (SELECT 1 FROM comms.pauses p
                      WHERE p.scope = 'channel' AND p.scope_value = m.channel)
    GROUP BY m.channel
    ORDER BY m.channel";

/// Checks every channel as of `now` and pauses the stale ones; returns what it paused.
pub async fn check_freshness(
    pool: &PgPool,
    window: Duration,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<Vec<AutoPause>, sqlx::Error> {
    let cutoff = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let stale: Vec<Stale> = sqlx::query_as(STALE).bind(cutoff).fetch_all(pool).await?;
    let mut paused = Vec::new();
    for channel in stale {
        if let Some(pause) = pause_channel(pool, &channel, window, owner).await? {
            paused.push(pause);
        }
    }
    Ok(paused)
}

async fn pause_channel(
    pool: &PgPool,
    stale: &Stale,
    window: Duration,
    owner: &str,
) -> Result<Option<AutoPause>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The unique (scope, scope_value) index makes this a no-op when a pause appeared meanwhile
    // (another status replica, or a person).
    let pause_id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO comms.pauses (scope, scope_value, reason, actor, automatic)
         VALUES ('channel', $1, $2, $3, true)
         ON CONFLICT (scope, scope_value) DO NOTHING RETURNING id",
    )
    .bind(&stale.channel)
    .bind(FRESHNESS_REASON)
    .bind(ACTOR)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(pause_id) = pause_id else {
        tx.rollback().await?;
        return Ok(None);
    };
    sqlx::query(
        "INSERT INTO comms.pause_events (pause_id, action, scope, scope_value, reason, actor)
         VALUES ($1, 'pause', 'channel', $2, $3, $4)",
    )
    .bind(pause_id)
    .bind(&stale.channel)
    .bind(FRESHNESS_REASON)
    .bind(ACTOR)
    .execute(&mut *tx)
    .await?;
    let window_text = humanize(window);
    let detail = format!(
        "{} {} message(s) sent since {} have had no status for over {window_text}, and no {} status callback arrived in that time",
        stale.stale,
        stale.channel,
        stale.oldest.to_rfc3339(),
        stale.channel,
    );
    let next_action = format!(
        "check the provider's status page and the gateway's webhook delivery (signatures, URL), then resume the {} channel once callbacks flow again",
        stale.channel
    );
    sqlx::query(
        "INSERT INTO comms.tasks (owner, title, next_action, reason, due_at)
         VALUES ($1, $2, $3, $4, now() + interval '1 hour')",
    )
    .bind(owner)
    .bind(format!(
        "Channel {} paused automatically: provider freshness uncertain",
        stale.channel
    ))
    .bind(&next_action)
    .bind(format!("{FRESHNESS_REASON}: {detail}"))
    .execute(&mut *tx)
    .await?;
    // Same payload as the pause switch's own changes: the commit-side clock in milliseconds.
    sqlx::query(
        "SELECT pg_notify($1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text)",
    )
    .bind(PAUSE_NOTIFY_CHANNEL)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::status()
        .auto_pauses
        .with_label_values(&[stale.channel.as_str()])
        .inc();
    tracing::warn!(channel = %stale.channel, stale = stale.stale, pause.id = %pause_id, "channel paused automatically: provider freshness uncertain");
    Ok(Some(AutoPause {
        pause_id,
        channel: stale.channel.clone(),
        stale_messages: stale.stale,
        oldest_dispatch: stale.oldest,
    }))
}

fn humanize(window: Duration) -> String {
    let secs = window.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// How often the watchdog looks: a tenth of the window, between 1 s and 1 min.
pub fn interval(window: Duration) -> Duration {
    (window / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Runs the check periodically until `shutdown`. Failures are logged and tried again next tick.
pub async fn run(runtime: Runtime, owner: String, shutdown: Shutdown) {
    let window = runtime.settings.status.freshness_window;
    let mut ticks = tokio::time::interval(interval(window));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if let Err(error) = check_freshness(&runtime.pool, window, &owner, Utc::now()).await {
            tracing::warn!(%error, "freshness check failed; trying again at the next tick");
        }
        let threshold = crate::partial_loss::Threshold {
            ratio: runtime.settings.status.partial_loss_ratio,
            min_messages: runtime.settings.status.partial_loss_min,
        };
        let checked = crate::partial_loss::check_partial_loss(
            &runtime.pool,
            window,
            threshold,
            &owner,
            Utc::now(),
        )
        .await;
        if let Err(error) = checked {
            tracing::warn!(%error, "partial-loss check failed; trying again at the next tick");
        }
    }
    tracing::info!("freshness watchdog stopped");
}
