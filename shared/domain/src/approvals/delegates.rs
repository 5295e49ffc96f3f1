//! Delegates: the people an owner names to decide on their messages while they are away.
//! Only the owner may name or remove their own delegates; every decision a delegate makes
//! records the owner it was made for.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::ApprovalError;

/// One owner → delegate pair.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Delegation {
    pub owner: String,
    pub delegate: String,
    pub granted_by: String,
    pub created_at: DateTime<Utc>,
}

/// Whether `actor` may decide on messages owned by `owner`: the owner, or a named delegate.
pub async fn may_decide<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    owner: &str,
    actor: &str,
) -> Result<bool, sqlx::Error> {
    if owner == actor {
        return Ok(true);
    }
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM comms.approval_delegates WHERE owner = $1 AND delegate = $2)",
    )
    .bind(owner)
    .bind(actor)
    .fetch_one(executor)
    .await
}

fn named(value: &str, what: &'static str) -> Result<String, ApprovalError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApprovalError::Missing(what));
    }
    Ok(value.to_string())
}

/// `actor` (who must be `owner`) names `delegate`. Naming someone twice changes nothing.
pub async fn add_delegate(
    pool: &PgPool,
    owner: &str,
    delegate: &str,
    actor: &str,
) -> Result<Delegation, ApprovalError> {
    let owner = named(owner, "the owner")?;
    let delegate = named(delegate, "the delegate")?;
    if actor.trim() != owner {
        return Err(ApprovalError::NotOwner { owner });
    }
    if delegate == owner {
        return Err(ApprovalError::Missing("a delegate other than the owner"));
    }
    let delegation = sqlx::query_as(
        "INSERT INTO comms.approval_delegates (owner, delegate, granted_by) VALUES ($1, $2, $1)
         ON CONFLICT (owner, delegate) DO UPDATE SET owner = EXCLUDED.owner
         RETURNING owner, delegate, granted_by, created_at",
    )
    .bind(&owner)
    .bind(&delegate)
    .fetch_one(pool)
    .await?;
    Ok(delegation)
}

/// `actor` (who must be `owner`) removes `delegate`. Returns whether there was one to remove.
pub async fn remove_delegate(
    pool: &PgPool,
    owner: &str,
    delegate: &str,
    actor: &str,
) -> Result<bool, ApprovalError> {
    let owner = named(owner, "the owner")?;
    if actor.trim() != owner {
        return Err(ApprovalError::NotOwner { owner });
    }
    let removed =
        sqlx::query("DELETE FROM comms.approval_delegates WHERE owner = $1 AND delegate = $2")
            .bind(&owner)
            .bind(delegate.trim())
            .execute(pool)
            .await?;
    Ok(removed.rows_affected() > 0)
}

/// Every delegation, by owner.
pub async fn delegates(pool: &PgPool) -> Result<Vec<Delegation>, sqlx::Error> {
    sqlx::query_as(
        "SELECT owner, delegate, granted_by, created_at FROM comms.approval_delegates
         ORDER BY owner, delegate",
    )
    .fetch_all(pool)
    .await
}
