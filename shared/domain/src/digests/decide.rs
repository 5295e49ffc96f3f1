//! The owner's decisions on digests (used by `commsctl digest` and the admin API): approve a
//! revision waiting for approval, and release a client's held digests. Same rule as message
//! approvals: the digest's owner or a delegate the owner named. Here, not in the digest worker,
//! so the operator surfaces do not depend on a worker crate.

use crate::approvals::may_decide;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no digest {0}")]
    NotFound(String),
    #[error("digest {id} is {state}, not awaiting_approval")]
    NotWaiting { id: Uuid, state: String },
    #[error(
        "{actor} may not decide on digests owned by {owner}: only the owner or a delegate the owner named may"
    )]
    NotAllowed { actor: String, owner: String },
    #[error("who decides is missing (--as)")]
    NoActor,
    #[error("client {0} has no held digests")]
    NotHeld(Uuid),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Approval {
    pub digest_id: Uuid,
    pub period_id: Uuid,
    pub approved_by: String,
    pub on_behalf_of: Option<String>,
    pub approved_at: DateTime<Utc>,
    pub approval_seconds: f64,
}

/// Approves the digest `digest_id` as `actor`. The caller then enqueues a `digest.report` job
/// for the period, which publishes it (after checking the content is still the approved one).
pub async fn approve(pool: &PgPool, digest_id: Uuid, actor: &str) -> Result<Approval, DecideError> {
    let actor = actor.trim();
    if actor.is_empty() {
        return Err(DecideError::NoActor);
    }
    let mut tx = pool.begin().await?;
    let row: Option<(String, String, Option<Uuid>)> =
        sqlx::query_as("SELECT state, owner, task_id FROM comms.digests WHERE id = $1 FOR UPDATE")
            .bind(digest_id)
            .fetch_optional(&mut *tx)
            .await?;
    let (state, owner, task) = row.ok_or_else(|| DecideError::NotFound(digest_id.to_string()))?;
    if state != "awaiting_approval" {
        return Err(DecideError::NotWaiting {
            id: digest_id,
            state,
        });
    }
    if !may_decide(&mut *tx, &owner, actor).await? {
        return Err(DecideError::NotAllowed {
            actor: actor.into(),
            owner,
        });
    }
    let approval: Approval = sqlx::query_as(
        "UPDATE comms.digests SET state = 'approved', approved_by = $2,
             on_behalf_of = CASE WHEN owner = $2 THEN NULL ELSE owner END, approved_at = now()
         WHERE id = $1
         RETURNING id AS digest_id, period_id, approved_by, on_behalf_of, approved_at,
                   approval_seconds",
    )
    .bind(digest_id)
    .bind(actor)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(task) = task {
        sqlx::query(
            "UPDATE comms.tasks SET state = 'done', done_at = now(), done_by = $2
             WHERE id = $1 AND state = 'open'",
        )
        .bind(task)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(approval)
}

/// Releases the client's held digests as `actor` (the hold's owner or a delegate); returns the
/// periods of that client that closed without a published digest, to build again.
pub async fn release(
    pool: &PgPool,
    client_id: Uuid,
    actor: &str,
) -> Result<Vec<Uuid>, DecideError> {
    let actor = actor.trim();
    if actor.is_empty() {
        return Err(DecideError::NoActor);
    }
    let mut tx = pool.begin().await?;
    let hold: Option<(Uuid, Option<Uuid>, String)> = sqlx::query_as(
        "SELECT h.id, h.task_id, coalesce(d.owner, c.owner) FROM comms.digest_holds h
         JOIN comms.clients c ON c.id = h.client_id
         LEFT JOIN comms.digests d ON d.id = h.digest_id
         WHERE h.client_id = $1 AND h.released_at IS NULL FOR UPDATE OF h",
    )
    .bind(client_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (hold, task, owner) = hold.ok_or(DecideError::NotHeld(client_id))?;
    if !may_decide(&mut *tx, &owner, actor).await? {
        return Err(DecideError::NotAllowed {
            actor: actor.into(),
            owner,
        });
    }
    sqlx::query(
        "UPDATE comms.digest_holds SET released_at = now(), released_by = $2 WHERE id = $1",
    )
    .bind(hold)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    if let Some(task) = task {
        sqlx::query("UPDATE comms.tasks SET state = 'done', done_at = now(), done_by = $2 WHERE id = $1 AND state = 'open'")
            .bind(task)
            .bind(actor)
            .execute(&mut *tx)
            .await?;
    }
    let periods: Vec<Uuid> = sqlx::query_scalar(
        "SELECT p.id FROM comms.report_periods p JOIN comms.reports r ON r.id = p.report_id
         WHERE r.client_id = $1 AND p.state = 'closed' ORDER BY p.ends_on",
    )
    .bind(client_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(periods)
}
