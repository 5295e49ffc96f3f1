//! Applying one status event: one transaction that finds and locks the message, records the
//! callback under its dedupe key, moves the delivery state forward (never back), records consent
//! changes on the contact and the message, appends the timeline events, keeps the raw payload in
//! `internal.provider_payloads`, and opens an owner task where a person must act.
//!
//! The row lock serialises concurrent callbacks of one message, so "forward only" is decided on
//! the state as it is, not as it was when the callback was read. The unique dedupe key makes a
//! second delivery of the same callback a no-op.
//!
//! What an event writes is decided by `effects::decide`; `group/` applies a whole delivery
//! group by the same rules in one transaction. This path stays for deliveries the group path does
//! not take (events matched by address), for groups of one, and for a group whose transaction
//! failed, so one bad delivery cannot keep failing its neighbours.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use comms_domain::messages::{DeliveryState, ledger};

use crate::effects::{self, ConsentUpdate, MATCHED_COLUMNS, Matched, OwnerTask, TimelineEntry};
use crate::event::ProviderEvent;

/// The actor of every event and task this worker writes.
pub const ACTOR: &str = "comms-status";

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Recorded; `moved_to` is the new delivery state if it changed.
    Recorded {
        message_id: Uuid,
        moved_to: Option<&'static str>,
        life: Life,
    },
    /// This exact event was applied before: nothing changed.
    Duplicate,
    /// No message matches (yet).
    Unknown,
    /// The message exists but the sender has not recorded its dispatch yet.
    NotYetSent,
}

/// What the handler needs of a message it applied an event to: to time its life and to
/// continue its trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Life {
    pub channel: String,
    pub created_at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

impl Life {
    pub fn of(message: &Matched) -> Self {
        Self {
            channel: message.channel.clone(),
            created_at: message.created_at,
            traceparent: message.traceparent.clone(),
        }
    }
}

async fn find(
    tx: &mut Transaction<'_, Postgres>,
    event: &ProviderEvent,
) -> Result<Option<Matched>, sqlx::Error> {
    let lookup = &event.lookup;
    if let Some(id) = lookup.message_id {
        let found = sqlx::query_as(&format!(
            "SELECT {MATCHED_COLUMNS} FROM comms.messages WHERE id = $1 FOR UPDATE"
        ))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    if let Some(provider_id) = &lookup.provider_message_id {
        let found = sqlx::query_as(&format!(
            "SELECT {MATCHED_COLUMNS} FROM comms.messages
             WHERE provider = $1 AND provider_message_id = $2 FOR UPDATE"
        ))
        .bind(event.provider.as_str())
        .bind(provider_id)
        .fetch_optional(&mut **tx)
        .await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    if let Some(address) = &lookup.recipient {
        return sqlx::query_as(&format!(
            "SELECT {MATCHED_COLUMNS} FROM comms.messages
             WHERE provider = $1 AND channel = $2 AND lower(recipient_address) = lower($3)
             ORDER BY dispatched_at DESC NULLS LAST LIMIT 1 FOR UPDATE"
        ))
        .bind(event.provider.as_str())
        .bind(event.provider.channel())
        .bind(address)
        .fetch_optional(&mut **tx)
        .await;
    }
    Ok(None)
}

/// How a status event reached the worker (`comms.delivery_callbacks.via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The provider's own callback, through the gateway.
    Callback,
    /// The reconciler asked the provider (`reconcile.rs`).
    Reconciliation,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Callback => "callback",
            Via::Reconciliation => "reconciliation",
        }
    }
}

/// Applies `event`, first seen by the gateway at `received_at`.
pub async fn apply(
    pool: &PgPool,
    event: &ProviderEvent,
    received_at: DateTime<Utc>,
) -> Result<Applied, sqlx::Error> {
    apply_via(pool, event, received_at, Via::Callback).await
}

/// Like [`apply`], recording how the event reached the worker.
pub async fn apply_via(
    pool: &PgPool,
    event: &ProviderEvent,
    received_at: DateTime<Utc>,
    via: Via,
) -> Result<Applied, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(message) = find(&mut tx, event).await? else {
        tx.rollback().await?;
        return Ok(Applied::Unknown);
    };
    if message.delivery_state == DeliveryState::Sending.as_str() {
        tx.rollback().await?;
        return Ok(Applied::NotYetSent);
    }
    let fresh: Option<i64> = sqlx::query_scalar(
        "INSERT INTO comms.delivery_callbacks (provider, event_key, message_id, channel, status, received_at, via)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (provider, event_key) DO NOTHING RETURNING id",
    )
    .bind(event.provider.as_str())
    .bind(&event.event_key)
    .bind(message.id)
    .bind(&message.channel)
    .bind(&event.status)
    .bind(received_at)
    .bind(via.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    if fresh.is_none() {
        tx.rollback().await?;
        return Ok(Applied::Duplicate);
    }

    let effects = effects::decide(&message, event);
    if let Some(step) = &effects.state_move {
        ledger::moves::apply_callback(
            &mut *tx,
            message.id,
            step.to.state(),
            step.failure_reason.as_deref(),
            step.next_action,
            received_at,
        )
        .await?;
    }
    let mut timeline = effects.timeline.iter();
    if let Some(status_entry) = timeline.next() {
        append_event(&mut tx, &message, event, status_entry).await?;
    }
    if let Some(consent) = &effects.consent {
        update_consent(&mut tx, &message, consent).await?;
    }
    for consent_entry in timeline {
        append_event(&mut tx, &message, event, consent_entry).await?;
    }
    if let Some(task) = &effects.task {
        open_task(&mut tx, &message, task).await?;
    }

    sqlx::query(
        "INSERT INTO internal.provider_payloads (provider, kind, message_id, provider_message_id, payload)
         VALUES ($1, 'status', $2, $3, $4)",
    )
    .bind(event.provider.as_str())
    .bind(message.id)
    .bind(
        event
            .lookup
            .provider_message_id
            .as_ref()
            .or(message.provider_message_id.as_ref()),
    )
    .bind(&event.raw)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Applied::Recorded {
        message_id: message.id,
        moved_to: effects.moved_to().map(|t| t.as_str()),
        life: Life::of(&message),
    })
}

/// A task for the message's owner: the next action, due within a day (the ledger writes it).
async fn open_task(
    tx: &mut Transaction<'_, Postgres>,
    message: &Matched,
    task: &OwnerTask,
) -> Result<(), sqlx::Error> {
    ledger::tasks::open(
        &mut **tx,
        &ledger::tasks::MessageTask {
            owner: &message.owner,
            title: &task.title,
            next_action: task.next_action,
            reason: &task.reason,
            due_in: ledger::tasks::due_in_a_day(),
            record_type: Some(&message.record_type),
            record_id: Some(message.record_id),
            message_id: Some(message.id),
            inbound_id: None,
        },
    )
    .await
}

async fn append_event(
    tx: &mut Transaction<'_, Postgres>,
    message: &Matched,
    event: &ProviderEvent,
    entry: &TimelineEntry,
) -> Result<(), sqlx::Error> {
    ledger::append_event(
        &mut **tx,
        ledger::Entry {
            message_id: Some(message.id),
            event_type: entry.event_type,
            actor: ACTOR,
            source: event.provider.as_str(),
            owner: Some(&message.owner),
            reason: &entry.reason,
            recovery_rule: entry.recovery_rule,
            detail: &entry.detail,
        },
    )
    .await?;
    Ok(())
}

/// Puts the address on the suppression list or records the opt-out, on the contact's channel and
/// on the message. An opt-out is never downgraded to a suppression. (The timeline entry is the
/// caller's, from [`effects::decide`].)
pub(crate) async fn update_consent(
    tx: &mut Transaction<'_, Postgres>,
    message: &Matched,
    consent: &ConsentUpdate,
) -> Result<(), sqlx::Error> {
    let state = consent.change.as_str();
    sqlx::query(
        "UPDATE comms.contact_channels SET consent_state = $3, consent_basis = 'provider',
             consent_source = $4, consent_at = now(), updated_at = now()
         WHERE contact_id = $1 AND channel = $2
           AND consent_state <> $3
           AND NOT ($3 = 'suppressed' AND consent_state = 'opted_out')",
    )
    .bind(message.contact_id)
    .bind(&message.channel)
    .bind(state)
    .bind(&consent.source)
    .execute(&mut **tx)
    .await?;
    ledger::moves::set_opt_out(&mut **tx, message.id, consent.change.opt_out_state()).await?;
    Ok(())
}
