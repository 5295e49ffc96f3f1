//! What a delivery group writes, gathered event by event and then written with one statement per
//! table (`unnest` of column arrays), in the order the events came.
//!
//! The statements of `comms.messages`, `comms.message_events` and the owner tasks are the
//! ledger's (`comms_domain::messages::ledger::{batch, tasks}`); the payloads statement is this
//! worker's own.
//!
//! A message that moves twice in one group (`sent`, then `delivered`) gets one `UPDATE` carrying
//! the effect of both moves, as the per-event path's two updates would have left it: the last
//! state and next action, the failure reason of a failure move (or the one it had),
//! `delivered_at` from the move to `delivered`, `dispatched_at` kept or set by a move to `sent`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use comms_domain::messages::ledger::{batch, tasks};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::effects::{ConsentUpdate, Effects, Matched};
use crate::event::{ProviderEvent, Target};
use crate::store::{self, ACTOR};

/// Every move of one message in the group, folded into one update.
type FoldedMove = batch::CallbackMove;

/// The group's timeline entries, one array per column.
type TimelineRows = batch::Entries;

/// The group's owner tasks, one array per column.
type TaskRows = tasks::Tasks;

#[derive(Default)]
struct PayloadRows<'a> {
    providers: Vec<&'static str>,
    message_ids: Vec<Uuid>,
    provider_message_ids: Vec<Option<String>>,
    payloads: Vec<&'a [u8]>,
}

/// The writes of one group, in event order.
#[derive(Default)]
pub(super) struct Writes<'a> {
    moves: Vec<FoldedMove>,
    move_of: HashMap<Uuid, usize>,
    consent: Vec<(Matched, ConsentUpdate)>,
    timeline: TimelineRows,
    tasks: TaskRows,
    payloads: PayloadRows<'a>,
}

impl<'a> Writes<'a> {
    /// Adds what `event`, first seen at `received_at`, does to `message` (as it was before it).
    pub(super) fn add(
        &mut self,
        message: &Matched,
        event: &'a ProviderEvent,
        effects: &Effects,
        received_at: DateTime<Utc>,
    ) {
        if let Some(step) = &effects.state_move {
            let index = *self.move_of.entry(message.id).or_insert_with(|| {
                self.moves.push(FoldedMove {
                    message_id: message.id,
                    to: step.to.state(),
                    failure_reason: None,
                    next_action: None,
                    delivered_at: None,
                    dispatched: false,
                });
                self.moves.len() - 1
            });
            let folded = &mut self.moves[index];
            folded.to = step.to.state();
            if step.failure_reason.is_some() {
                folded.failure_reason.clone_from(&step.failure_reason);
            }
            folded.next_action = step.next_action;
            match step.to {
                Target::Delivered => folded.delivered_at = Some(received_at),
                Target::Sent => folded.dispatched = true,
                Target::Undelivered | Target::Failed => {}
            }
        }
        if let Some(consent) = &effects.consent {
            self.consent.push((message.clone(), consent.clone()));
        }
        for entry in &effects.timeline {
            let rows = &mut self.timeline;
            rows.message_ids.push(message.id);
            rows.event_types.push(entry.event_type);
            rows.sources.push(event.provider.as_str());
            rows.owners.push(message.owner.clone());
            rows.reasons.push(entry.reason.clone());
            rows.recovery_rules.push(entry.recovery_rule);
            rows.details.push(entry.detail.clone());
        }
        if let Some(task) = &effects.task {
            let rows = &mut self.tasks;
            rows.owners.push(message.owner.clone());
            rows.titles.push(task.title.clone());
            rows.next_actions.push(task.next_action);
            rows.reasons.push(task.reason.clone());
            rows.record_types.push(message.record_type.clone());
            rows.record_ids.push(message.record_id);
            rows.message_ids.push(message.id);
        }
        let rows = &mut self.payloads;
        rows.providers.push(event.provider.as_str());
        rows.message_ids.push(message.id);
        rows.provider_message_ids.push(
            event
                .lookup
                .provider_message_id
                .clone()
                .or_else(|| message.provider_message_id.clone()),
        );
        rows.payloads.push(&event.raw);
    }

    /// Writes everything gathered, inside `tx`.
    pub(super) async fn execute(
        mut self,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), sqlx::Error> {
        // Consent rows are taken in one global order, so two groups changing the same contacts
        // wait for each other instead of deadlocking; the sort is stable, so each contact's own
        // changes keep their order.
        self.consent
            .sort_by(|(a, _), (b, _)| (a.contact_id, &a.channel).cmp(&(b.contact_id, &b.channel)));
        if !self.moves.is_empty() {
            batch::apply_callback_moves(&mut **tx, &self.moves).await?;
        }
        for (message, consent) in &self.consent {
            store::update_consent(tx, message, consent).await?;
        }
        if !self.timeline.message_ids.is_empty() {
            batch::append_events(&mut **tx, ACTOR, &self.timeline).await?;
        }
        if !self.tasks.message_ids.is_empty() {
            tasks::open_many(&mut **tx, &self.tasks).await?;
        }
        if !self.payloads.message_ids.is_empty() {
            keep_payloads(tx, &self.payloads).await?;
        }
        Ok(())
    }
}

async fn keep_payloads(
    tx: &mut Transaction<'_, Postgres>,
    rows: &PayloadRows<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO internal.provider_payloads (provider, kind, message_id, provider_message_id, payload)
         SELECT p.provider, 'status', p.message_id, p.provider_message_id, p.payload
         FROM unnest($1::text[], $2::uuid[], $3::text[], $4::bytea[])
              WITH ORDINALITY AS p(provider, message_id, provider_message_id, payload, position)
         ORDER BY p.position",
    )
    .bind(&rows.providers)
    .bind(&rows.message_ids)
    .bind(&rows.provider_message_ids)
    .bind(&rows.payloads)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
