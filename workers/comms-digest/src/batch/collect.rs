//! Collecting: one event joins the open bucket of its key, in one transaction.
//!
//! The bucket row is locked (`FOR UPDATE`) while the event is added, and the flusher locks the
//! same row before it reads the events, so an event is either in a bucket before that bucket is
//! flushed or in the next one — never in a flushed bucket that already went out, never in two.
//! A unique index allows one open bucket per key; a replica that loses the race to open it simply
//! joins the winner's. The event id is the primary key, so a redelivered event is a no-op.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::PgPool;
use uuid::Uuid;

use super::window::closes_at;
use crate::job::{BatchEvent, Window};

/// What collecting one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collected {
    /// Added to the bucket; `due` when it reached its maximum with this event.
    Added { batch_id: Uuid, due: bool },
    /// The event id was collected before (a redelivery).
    Duplicate,
}

#[derive(sqlx::FromRow)]
struct Open {
    id: Uuid,
    closes_at: DateTime<Utc>,
    max_events: i32,
    event_count: i32,
}

/// Adds `event` to its key's open bucket (opening one if needed) at `now`.
pub async fn collect(
    pool: &PgPool,
    event: &BatchEvent,
    window: Window,
    now: DateTime<Utc>,
    default_zone: Tz,
) -> Result<Collected, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let seen: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM comms.digest_batch_events WHERE event_id = $1)",
    )
    .bind(&event.event_id)
    .fetch_one(&mut *tx)
    .await?;
    if seen {
        return Ok(Collected::Duplicate);
    }
    let zone: Option<String> =
        sqlx::query_scalar("SELECT time_zone FROM comms.contacts WHERE id = $1")
            .bind(event.contact_id)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
    let zone = zone
        .and_then(|z| z.parse::<Tz>().ok())
        .unwrap_or(default_zone);
    // A bucket can be flushed (or found full or past its end) between our attempts; a few rounds
    // always end with an open bucket that takes the event.
    let bucket = loop {
        open_if_none(&mut tx, event, window, now, zone).await?;
        let open: Option<Open> = sqlx::query_as(
            "SELECT id, closes_at, max_events, event_count FROM comms.digest_batches
             WHERE contact_id = $1 AND channel = $2 AND topic = $3 AND state = 'open'
             FOR UPDATE",
        )
        .bind(event.contact_id)
        .bind(&event.channel)
        .bind(&event.topic)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(open) = open else { continue };
        if open.closes_at <= now || open.event_count >= open.max_events {
            // Its window ended (or it is full) and the flusher has not taken it yet: it takes no
            // more events, and this one opens the next bucket.
            sqlx::query("UPDATE comms.digest_batches SET state = 'due' WHERE id = $1")
                .bind(open.id)
                .execute(&mut *tx)
                .await?;
            continue;
        }
        break open;
    };
    let inserted = sqlx::query(
        "INSERT INTO comms.digest_batch_events (event_id, batch_id, payload, received_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&event.event_id)
    .bind(bucket.id)
    .bind(serde_json::Value::Object(event.event.clone()))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(Collected::Duplicate); // collected by a replica since our check
    }
    let due: bool = sqlx::query_scalar(
        "UPDATE comms.digest_batches SET event_count = event_count + 1,
             state = CASE WHEN event_count + 1 >= max_events THEN 'due' ELSE state END
         WHERE id = $1 RETURNING state = 'due'",
    )
    .bind(bucket.id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Collected::Added {
        batch_id: bucket.id,
        due,
    })
}

async fn open_if_none(
    tx: &mut sqlx::PgConnection,
    event: &BatchEvent,
    window: Window,
    now: DateTime<Utc>,
    zone: Tz,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.digest_batches (contact_id, channel, topic, window_spec, opened_at,
             closes_at, max_events, template_name, template_version, kind, owner, source,
             record_type, record_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (contact_id, channel, topic) WHERE state = 'open' DO NOTHING",
    )
    .bind(event.contact_id)
    .bind(&event.channel)
    .bind(&event.topic)
    .bind(serde_json::to_value(&event.window).unwrap_or_default())
    .bind(now)
    .bind(closes_at(window, now, zone))
    .bind(i32::try_from(event.max_events).unwrap_or(i32::MAX))
    .bind(&event.template.name)
    .bind(
        event
            .template
            .version
            .map(|v| i32::try_from(v).unwrap_or(i32::MAX)),
    )
    .bind(&event.kind)
    .bind(&event.owner)
    .bind(&event.source)
    .bind(&event.record.kind)
    .bind(event.record.id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
