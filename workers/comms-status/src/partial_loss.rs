//! The watchdog's second question: are *some* statuses missing? The freshness check
//! ([`crate::watchdog`]) notices a provider that stopped calling back altogether; a gateway
//! outage of a few seconds, or a provider dropping part of its callbacks, leaves the channel
//! looking alive while a share of its messages never hear back.
//!
//! Every tick it looks at the messages dispatched between two windows and one window ago
//! through a provider that calls back: by then each should have its final status (or have been
//! reconciled). When at least `status.partial_loss_min` were dispatched and the share still in
//! `sent` or `unknown_delivery` reaches `status.partial_loss_ratio`, it opens one owner task for
//! the channel (none while one is still open) and counts it. It does not pause: callbacks still
//! flow, the reconciler fetches what it can, and what it cannot is `unknown_delivery` with a task
//! of its own. The share is also exported per channel, for a dashboard and an alert.

use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_domain::messages::state::DeliveryState;
use serde::Serialize;
use sqlx::PgPool;

use crate::metrics;

/// What the check found on one channel that crossed the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartialLoss {
    pub channel: String,
    /// Messages dispatched through a calling-back provider in the band looked at.
    pub dispatched: i64,
    /// Of those, the ones still without a final status.
    pub missing: i64,
    /// True when this check opened the task (false: one was already open).
    pub task_opened: bool,
}

/// The threshold: a share of `ratio` missing among at least `min_messages`.
#[derive(Debug, Clone, Copy)]
pub struct Threshold {
    pub ratio: f64,
    pub min_messages: i64,
}

#[derive(sqlx::FromRow)]
struct Band {
    channel: String,
    dispatched: i64,
    missing: i64,
}

fn title(channel: &str) -> String {
    format!("Channel {channel}: delivery status missing for part of its messages")
}

/// Checks every channel as of `now`; sets the missing-share gauge and opens the tasks due.
pub async fn check_partial_loss(
    pool: &PgPool,
    window: Duration,
    threshold: Threshold,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<Vec<PartialLoss>, sqlx::Error> {
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let bands: Vec<Band> = sqlx::query_as(
        "SELECT channel, count(*) AS dispatched,
                count(*) FILTER (WHERE delivery_state = ANY($3)) AS missing
         FROM comms.messages
         WHERE dispatched_at >= $1 AND dispatched_at < $2
           AND provider IN ('twilio', 'sendgrid')
         GROUP BY channel ORDER BY channel",
    )
    .bind(now - window - window)
    .bind(now - window)
    .bind([
        DeliveryState::Sent.as_str(),
        DeliveryState::UnknownDelivery.as_str(),
    ])
    .fetch_all(pool)
    .await?;
    let mut found = Vec::new();
    for band in bands {
        let share = band.missing as f64 / band.dispatched.max(1) as f64;
        metrics::status()
            .missing_share
            .with_label_values(&[band.channel.as_str()])
            .set(share);
        if band.dispatched < threshold.min_messages || share < threshold.ratio {
            continue;
        }
        let task_opened = open_task(pool, &band, owner).await?;
        if task_opened {
            metrics::status()
                .partial_losses
                .with_label_values(&[band.channel.as_str()])
                .inc();
            tracing::warn!(channel = %band.channel, dispatched = band.dispatched, missing = band.missing,
                "part of a channel's messages have no delivery status");
        }
        found.push(PartialLoss {
            channel: band.channel,
            dispatched: band.dispatched,
            missing: band.missing,
            task_opened,
        });
    }
    Ok(found)
}

/// One open task per channel: inserted only when no task of the same title is open.
async fn open_task(pool: &PgPool, band: &Band, owner: &str) -> Result<bool, sqlx::Error> {
    let reason = format!(
        "{} of {} {} message(s) dispatched between two windows and one window ago still have no final status",
        band.missing, band.dispatched, band.channel
    );
    let next_action = format!(
        "check the gateway's webhook delivery and the provider's status page; the reconciler fetches what the provider still has, the rest ends unknown_delivery with a task each; close this task once the {} share falls",
        band.channel
    );
    let opened = sqlx::query(
        "INSERT INTO comms.tasks (owner, title, next_action, reason, due_at)
         SELECT $1, $2, $3, $4, now() + interval '1 hour'
         WHERE NOT EXISTS (SELECT 1 FROM comms.tasks WHERE title = $2 AND state = 'open')",
    )
    .bind(owner)
    .bind(title(&band.channel))
    .bind(next_action)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(opened.rows_affected() == 1)
}
