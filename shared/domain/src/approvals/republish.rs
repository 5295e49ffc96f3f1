//! Handing a decided message back to the sender, and the housekeeping that keeps the workflow
//! moving in long-running processes.
//!
//! The decision is committed first and the stored request published afterwards (with a broker
//! confirm). The other order could lose the message: the sender could consume the request before
//! the decision is visible, find it still waiting, and acknowledge it. The cost of this order is a
//! window where the decision is recorded but the publish did not happen (broker down, process
//! killed); housekeeping closes it by publishing again every approved message that has sat in
//! `received` without a confirmed publish. A second delivery is harmless: the sender dedupes.

use std::time::Duration;

use lapin::types::FieldTable;
use sqlx::PgPool;
use uuid::Uuid;

use comms_runtime::amqp::{Outgoing, PublishError, Publisher};
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_runtime::topology::Topology;

/// A decided message that sits in `received` this long without a confirmed publish was lost.
const LOST_AFTER: Duration = Duration::from_secs(30);

/// Why a decided message could not be handed back to the sender (it will be, by housekeeping).
#[derive(Debug, thiserror::Error)]
pub enum RepublishError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("publishing to comms.send: {0}")]
    Publish(#[from] PublishError),
}

/// A decided message's stored send request, ready to publish to `comms.send` again.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub message_id: Uuid,
    pub idempotency_key: String,
    /// `send.<channel>`.
    pub routing_key: String,
    /// The canonical request (v1) exactly as the message was first asked for.
    pub body: Vec<u8>,
    /// The message's stored trace context, which the republished request continues.
    pub traceparent: Option<String>,
}

impl StoredRequest {
    /// The confirmed publish of this request to `exchange` (the namespace's `comms.send`), in
    /// the message's trace: its headers carry an `approval.release` step, a child of the stored
    /// context linked to the current span (the decision's request, or housekeeping).
    pub fn outgoing<'a>(&'a self, exchange: &'a str) -> Outgoing<'a> {
        let mut headers = FieldTable::default();
        let step = comms_runtime::trace_context::message_step(
            "approval.release",
            self.message_id,
            self.traceparent.as_deref(),
        );
        comms_runtime::trace_context::inject_span(&step, &mut headers);
        Outgoing {
            exchange,
            routing_key: &self.routing_key,
            body: &self.body,
            headers,
            message_id: Some(self.idempotency_key.clone()),
            content_type: Some(crate::contract::CONTENT_TYPE),
        }
    }
}

/// Loads the message's stored request.
pub async fn stored_request(pool: &PgPool, message_id: Uuid) -> Result<StoredRequest, sqlx::Error> {
    let (idempotency_key, channel, request, traceparent): (
        String,
        String,
        serde_json::Value,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT idempotency_key, channel, request, traceparent FROM comms.messages WHERE id = $1",
    )
    .bind(message_id)
    .fetch_one(pool)
    .await?;
    Ok(StoredRequest {
        message_id,
        idempotency_key,
        routing_key: format!("send.{channel}"),
        body: serde_json::to_vec(&request).unwrap_or_default(),
        traceparent,
    })
}

/// Records that the broker confirmed the publish, so housekeeping does not publish it again.
pub async fn mark_republished(pool: &PgPool, message_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE comms.message_approvals SET republished_at = now()
         WHERE message_id = $1 AND republished_at IS NULL AND decision IN ('approved', 'reviewed_safe')",
    )
    .bind(message_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Publishes the message's stored request to `comms.send` (confirmed) and records that it did.
/// Processes with a publisher of their own (the gateway) use [`stored_request`] and
/// [`mark_republished`] around it instead.
pub async fn republish(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
    message_id: Uuid,
) -> Result<(), RepublishError> {
    let request = stored_request(pool, message_id).await?;
    let exchange = topology.send_exchange();
    publisher.publish(request.outgoing(&exchange)).await?;
    mark_republished(pool, message_id).await?;
    Ok(())
}

/// Decided messages whose publish was lost (see the module docs).
async fn lost(pool: &PgPool, older_than: Duration) -> Result<Vec<Uuid>, sqlx::Error> {
    let age = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
    sqlx::query_scalar(
        "SELECT m.id FROM comms.messages m
         WHERE m.delivery_state = 'received' AND m.updated_at <= now() - $1::interval
           AND EXISTS (SELECT 1 FROM comms.message_approvals a
                       WHERE a.message_id = m.id AND a.republished_at IS NULL
                         AND a.decision IN ('approved', 'reviewed_safe')
                         AND a.decided_at <= now() - $1::interval)
         ORDER BY m.created_at LIMIT 500",
    )
    .bind(age)
    .fetch_all(pool)
    .await
}

/// Publishes again every decided message that sat in `received` for `older_than` without a
/// confirmed publish. Returns how many were published. A message the database refuses for good
/// is logged and skipped, so it cannot hold up the others; a transient failure stops the round.
pub async fn republish_due(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
    older_than: Duration,
) -> Result<usize, RepublishError> {
    let due = lost(pool, older_than).await?;
    let mut published = 0;
    for id in &due {
        match republish(pool, publisher, topology, *id).await {
            Ok(()) => published += 1,
            // This message cannot be read back; the others still can (comms_runtime::db_error).
            Err(RepublishError::Db(error)) if !comms_runtime::db_error::is_transient(&error) => {
                tracing::error!(
                    message.id = %id,
                    reason = %comms_runtime::db_error::refused_reason(&error),
                    "an approved message cannot be published again; check its stored request"
                );
            }
            Err(error) => return Err(error),
        }
    }
    Ok(published)
}

/// Runs until `shutdown`, every `approvals.check_interval`: expires what waited longer than
/// `approvals.expire_after`, and publishes lost approvals again. Every sender runs it; expiry
/// skips messages another process holds, and a double publish is deduped by the sender.
pub async fn housekeeping(runtime: Runtime, shutdown: Shutdown) {
    let settings = runtime.settings.approvals.clone();
    let mut ticker = tokio::time::interval(settings.check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut link: Option<(lapin::Connection, Publisher)> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match super::expire_due(&runtime.pool, settings.expire_after).await {
            Ok(expired) if !expired.is_empty() => {
                tracing::info!(
                    approvals.expired = expired.len(),
                    "messages expired without a decision; owners have a task"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not expire waiting approvals"),
        }
        match lost(&runtime.pool, LOST_AFTER).await {
            Ok(due) if due.is_empty() => continue,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "could not look for approvals to publish again");
                continue;
            }
        }
        if link.as_ref().is_none_or(|(_, p)| !p.is_usable()) {
            link = connect(&runtime).await;
        }
        let Some((_, publisher)) = link.as_ref() else {
            continue;
        };
        match republish_due(&runtime.pool, publisher, &runtime.topology, LOST_AFTER).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                approvals.republished = n,
                "approved messages published again"
            ),
            Err(error) => {
                tracing::warn!(%error, "publishing approved messages again failed; will retry");
                link = None;
            }
        }
    }
    if let Some((connection, _)) = link {
        let _ = connection.close(200, "shutdown".into()).await;
    }
}

async fn connect(runtime: &Runtime) -> Option<(lapin::Connection, Publisher)> {
    let connection = comms_runtime::amqp::connect(&runtime.settings.amqp, "comms-approvals")
        .await
        .ok()?;
    let publisher = Publisher::open(&connection).await.ok()?;
    Some((connection, publisher))
}
