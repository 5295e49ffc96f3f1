//! Applying the events of a whole delivery group in one transaction, with a handful of set-based
//! statements instead of one transaction per event: PostgreSQL's commit (a WAL flush) and its
//! per-statement work, not the rules, are what limit status ingestion.
//!
//! The transaction locks every message the group names in one statement (in id order, so two
//! groups never wait on each other in a cycle), records every callback under its dedupe key in
//! one `INSERT … ON CONFLICT DO NOTHING`, then walks the fresh events in delivery order against
//! the locked states it keeps in memory — the same [`effects::decide`] the per-event path uses —
//! and writes the result ([`writes`]): one `UPDATE` of the messages that moved, one `INSERT` of
//! the timeline entries in order, one of the owner tasks, one of the raw payloads; consent
//! changes (rare) are two small statements each, in order. So a group holding `sent` then
//! `delivered` for one message ends exactly as the two applied one after the other would, and a
//! callback repeated in the group is applied once.
//!
//! Events matched by recipient address only (SendGrid's asynchronous bounces) are not taken here:
//! [`can_take`] says which deliveries the caller must apply one event at a time instead.

mod writes;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use comms_domain::messages::DeliveryState;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::effects::{self, MATCHED_COLUMNS, Matched};
use crate::event::ProviderEvent;
use crate::store::{Applied, Life};
use writes::Writes;

/// The events of one delivery and when the gateway first saw it.
pub struct Delivery<'a> {
    pub events: &'a [ProviderEvent],
    pub first_seen: DateTime<Utc>,
}

/// Whether every event of a delivery can be matched by an id, so the group path can take it.
pub fn can_take(events: &[ProviderEvent]) -> bool {
    events.iter().all(|event| event.lookup.recipient.is_none())
}

/// An event whose message was found, ready to apply, and not repeated earlier in the group.
struct Candidate {
    delivery: usize,
    event: usize,
    message_id: Uuid,
}

/// Applies every event of `deliveries` (each of which [`can_take`]) in one transaction and says,
/// per delivery and per event, what applying it did: what `store::apply` says applying them one
/// after the other, in this order, would have done.
pub async fn apply(
    pool: &PgPool,
    deliveries: &[Delivery<'_>],
) -> Result<Vec<Vec<Applied>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut messages = lock_messages(&mut tx, deliveries).await?;
    let mut applied: Vec<Vec<Applied>> = deliveries
        .iter()
        .map(|delivery| vec![Applied::Unknown; delivery.events.len()])
        .collect();
    let candidates = match_events(deliveries, &messages, &mut applied);
    if candidates.is_empty() {
        tx.rollback().await?;
        return Ok(applied);
    }
    let fresh = record_callbacks(&mut tx, deliveries, &messages, &candidates).await?;

    let mut writes = Writes::default();
    for candidate in &candidates {
        let delivery = &deliveries[candidate.delivery];
        let event = &delivery.events[candidate.event];
        let key = (event.provider.as_str().to_string(), event.event_key.clone());
        let outcome = &mut applied[candidate.delivery][candidate.event];
        if !fresh.contains(&key) {
            *outcome = Applied::Duplicate;
            continue;
        }
        let Some(message) = messages.get_mut(&candidate.message_id) else {
            continue;
        };
        let effects = effects::decide(message, event);
        writes.add(message, event, &effects, delivery.first_seen);
        let moved_to = effects.moved_to();
        if let Some(target) = moved_to {
            // The next event of this message in the group sees the state this one left.
            message.delivery_state = target.as_str().to_string();
        }
        *outcome = Applied::Recorded {
            message_id: message.id,
            moved_to: moved_to.map(|target| target.as_str()),
            life: Life::of(message),
        };
    }
    writes.execute(&mut tx).await?;
    tx.commit().await?;
    Ok(applied)
}

/// Locks every message any event of the group names, by our id or by the provider's, in id order.
async fn lock_messages(
    tx: &mut Transaction<'_, Postgres>,
    deliveries: &[Delivery<'_>],
) -> Result<HashMap<Uuid, Matched>, sqlx::Error> {
    let mut ids = Vec::new();
    let mut providers = Vec::new();
    let mut provider_ids = Vec::new();
    for event in deliveries.iter().flat_map(|delivery| delivery.events) {
        if let Some(id) = event.lookup.message_id {
            ids.push(id);
        }
        if let Some(provider_id) = &event.lookup.provider_message_id {
            providers.push(event.provider.as_str());
            provider_ids.push(provider_id.as_str());
        }
    }
    let locked: Vec<Matched> = sqlx::query_as(&format!(
        "SELECT {MATCHED_COLUMNS} FROM comms.messages
         WHERE id IN (SELECT unnest($1::uuid[])
                      UNION
                      SELECT m.id FROM comms.messages m
                      JOIN unnest($2::text[], $3::text[]) AS k(provider, provider_message_id)
                        ON m.provider = k.provider AND m.provider_message_id = k.provider_message_id)
         ORDER BY id
         FOR UPDATE"
    ))
    .bind(&ids)
    .bind(&providers)
    .bind(&provider_ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(locked
        .into_iter()
        .map(|message| (message.id, message))
        .collect())
}

/// Finds each event's message the way `store::apply` does (our id first, then the provider's),
/// marks the events that cannot be applied (no message, message still `sending`, a callback
/// already seen earlier in this group), and returns the others in order.
fn match_events(
    deliveries: &[Delivery<'_>],
    messages: &HashMap<Uuid, Matched>,
    applied: &mut [Vec<Applied>],
) -> Vec<Candidate> {
    let by_provider_id: HashMap<(&str, &str), Uuid> = messages
        .values()
        .filter_map(|message| {
            let key = (
                message.provider.as_deref()?,
                message.provider_message_id.as_deref()?,
            );
            Some((key, message.id))
        })
        .collect();
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    for (delivery_index, delivery) in deliveries.iter().enumerate() {
        for (event_index, event) in delivery.events.iter().enumerate() {
            let lookup = &event.lookup;
            let found = lookup
                .message_id
                .filter(|id| messages.contains_key(id))
                .or_else(|| {
                    let provider_id = lookup.provider_message_id.as_deref()?;
                    by_provider_id
                        .get(&(event.provider.as_str(), provider_id))
                        .copied()
                })
                .and_then(|id| messages.get(&id));
            applied[delivery_index][event_index] = match found {
                None => Applied::Unknown,
                Some(message) if message.delivery_state == DeliveryState::Sending.as_str() => {
                    Applied::NotYetSent
                }
                Some(message) => {
                    if !seen.insert((event.provider.as_str(), event.event_key.as_str())) {
                        Applied::Duplicate
                    } else {
                        candidates.push(Candidate {
                            delivery: delivery_index,
                            event: event_index,
                            message_id: message.id,
                        });
                        // Decided once the callback is recorded.
                        continue;
                    }
                }
            };
        }
    }
    candidates
}

/// Records the candidates' callbacks; returns the `(provider, event_key)` of those not seen
/// before (the others were applied by an earlier delivery).
async fn record_callbacks(
    tx: &mut Transaction<'_, Postgres>,
    deliveries: &[Delivery<'_>],
    messages: &HashMap<Uuid, Matched>,
    candidates: &[Candidate],
) -> Result<HashSet<(String, String)>, sqlx::Error> {
    let mut providers = Vec::with_capacity(candidates.len());
    let mut keys = Vec::with_capacity(candidates.len());
    let mut message_ids = Vec::with_capacity(candidates.len());
    let mut channels = Vec::with_capacity(candidates.len());
    let mut statuses = Vec::with_capacity(candidates.len());
    let mut received = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let delivery = &deliveries[candidate.delivery];
        let event = &delivery.events[candidate.event];
        providers.push(event.provider.as_str());
        keys.push(event.event_key.as_str());
        message_ids.push(candidate.message_id);
        channels.push(
            messages
                .get(&candidate.message_id)
                .map_or("", |message| message.channel.as_str()),
        );
        statuses.push(event.status.as_str());
        received.push(delivery.first_seen);
    }
    let fresh: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO comms.delivery_callbacks (provider, event_key, message_id, channel, status, received_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[])
         ON CONFLICT (provider, event_key) DO NOTHING
         RETURNING provider, event_key",
    )
    .bind(&providers)
    .bind(&keys)
    .bind(&message_ids)
    .bind(&channels)
    .bind(&statuses)
    .bind(&received)
    .fetch_all(&mut **tx)
    .await?;
    Ok(fresh.into_iter().collect())
}
