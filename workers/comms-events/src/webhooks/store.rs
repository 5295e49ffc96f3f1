//! The webhook tables: who subscribed, each delivery's state, failures and disabling.

use comms_domain::events::LifecycleEvent;
use sqlx::PgPool;
use uuid::Uuid;

use super::deliver::Attempt;

/// An active webhook, with the secret it signs with.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub secret: String,
    pub owner: String,
}

/// The active webhooks that take `event`: of its app (or of every app) and subscribed to its
/// type; with `replay`, only that webhook.
pub async fn subscribed(
    pool: &PgPool,
    event: &LifecycleEvent,
    replay: Option<Uuid>,
) -> Result<Vec<Webhook>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, url, secret, owner FROM comms.webhooks
         WHERE state = 'active' AND (app IS NULL OR app = $1)
           AND ($2 = ANY(events) OR '*' = ANY(events))
           AND ($3::uuid IS NULL OR id = $3)
         ORDER BY created_at",
    )
    .bind(&event.app)
    .bind(&event.event_type)
    .bind(replay)
    .fetch_all(pool)
    .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub state: String,
}

/// The delivery of `event` to `webhook`, created pending if new; a replay makes it pending again.
pub async fn delivery(
    pool: &PgPool,
    webhook: Uuid,
    event: &LifecycleEvent,
    replay: bool,
) -> Result<Delivery, sqlx::Error> {
    let payload = serde_json::to_value(event).unwrap_or_default();
    sqlx::query_as(
        "INSERT INTO comms.webhook_deliveries (webhook_id, event_id, event_type, payload)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (webhook_id, event_id) DO UPDATE
            SET state = CASE WHEN $5 THEN 'pending' ELSE comms.webhook_deliveries.state END,
                attempts = CASE WHEN $5 THEN 0 ELSE comms.webhook_deliveries.attempts END
         RETURNING id, state",
    )
    .bind(webhook)
    .bind(event.event_id)
    .bind(&event.event_type)
    .bind(payload)
    .bind(replay)
    .fetch_one(pool)
    .await
}

pub async fn delivered(
    pool: &PgPool,
    webhook: Uuid,
    delivery: i64,
    attempt: &Attempt,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE comms.webhook_deliveries SET state = 'delivered', attempts = attempts + 1,
             last_status = $2, last_error = NULL, last_attempt_at = now(), delivered_at = now()
         WHERE id = $1",
    )
    .bind(delivery)
    .bind(attempt.status.map(i32::from))
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE comms.webhooks SET consecutive_failures = 0 WHERE id = $1")
        .bind(webhook)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// What a failed attempt led to.
pub struct Failure {
    /// The delivery reached its last attempt and is `failed`.
    pub given_up: bool,
    /// The webhook reached the failure threshold and was disabled (a task is open).
    pub disabled: bool,
}

pub async fn failed_attempt(
    pool: &PgPool,
    webhook: &Webhook,
    delivery: i64,
    attempt: &Attempt,
    max_attempts: u32,
    disable_after: u32,
) -> Result<Failure, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let state: String = sqlx::query_scalar(
        "UPDATE comms.webhook_deliveries
            SET attempts = attempts + 1, last_status = $2, last_error = $3, last_attempt_at = now(),
                state = CASE WHEN attempts + 1 >= $4 THEN 'failed' ELSE 'pending' END
         WHERE id = $1 RETURNING state",
    )
    .bind(delivery)
    .bind(attempt.status.map(i32::from))
    .bind(attempt.describe())
    .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
    .fetch_one(&mut *tx)
    .await?;
    let disabled: Option<Uuid> = sqlx::query_scalar(
        "UPDATE comms.webhooks
            SET consecutive_failures = consecutive_failures + 1,
                state = CASE WHEN consecutive_failures + 1 >= $2 THEN 'disabled' ELSE state END,
                disabled_at = CASE WHEN consecutive_failures + 1 >= $2 THEN now() ELSE disabled_at END,
                disabled_reason = CASE WHEN consecutive_failures + 1 >= $2
                    THEN format('%s consecutive failed deliveries; last: %s', consecutive_failures + 1, $3::text)
                    ELSE disabled_reason END
         WHERE id = $1 AND state = 'active'
         RETURNING CASE WHEN state = 'disabled' THEN id END",
    )
    .bind(webhook.id)
    .bind(i32::try_from(disable_after).unwrap_or(i32::MAX))
    .bind(attempt.describe())
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    if disabled.is_some() {
        sqlx::query(
            "INSERT INTO comms.tasks (owner, title, next_action, reason, due_at)
             VALUES ($1, 'Webhook disabled after repeated failures',
                     $2, $3, now() + interval '4 hours')",
        )
        .bind(&webhook.owner)
        .bind(format!(
            "fix the endpoint, then `commsctl webhooks enable {}` and replay what it missed",
            webhook.id
        ))
        .bind(format!(
            "webhook {} failed {disable_after} deliveries in a row (last: {})",
            webhook.id,
            attempt.describe()
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Failure {
        given_up: state == "failed",
        disabled: disabled.is_some(),
    })
}
