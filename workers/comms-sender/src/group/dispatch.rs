//! The provider calls of a group's claimed messages and the recording of what came back.
//!
//! First the calls are marked as started, in one statement whose commit comes before any byte
//! goes to a provider ([`write::mark_calls`]): a message of a group whose process dies before
//! that commit was never sent, and is sent again after recovery instead of being failed as
//! `dispatch_outcome_unknown`. Each call is then preceded, with nothing in between, by the check
//! for a pause read while the group was claiming (as on the one-message path); a message it
//! covers is held instead. Acceptances are recorded in one statement; holds, failures and
//! retries each through the one-message outcome code, side by side.

use std::collections::HashSet;

use comms_domain::pause::ActivePause;
use comms_runtime::runtime::Outcome;
use futures_util::future::join_all;
use tracing::Instrument;

use super::Decided;
use super::write::{self, Accepted, NewMessage};
use crate::outcomes;
use crate::providers::{Dispatch, Outbound};
use crate::sender::SendHandler;
use crate::store::Message;
use uuid::Uuid;

/// What became of one claimed message at the provider's door.
enum Called {
    Dispatched(Dispatch),
    /// A pending pause covered it: never sent.
    Held(ActivePause),
}

/// Sends every claimed message (delivery index, message, what was claimed) and records each
/// outcome; returns the outcome of every delivery it decided, and the indexes of the members it
/// leaves to the one-message path.
pub(super) async fn send_claimed(
    handler: &SendHandler,
    claim: Uuid,
    claimed: &[(usize, &Message, &NewMessage<'_>)],
) -> (Decided, Vec<usize>) {
    let ids: Vec<Uuid> = claimed.iter().map(|(_, message, _)| message.id).collect();
    let t = std::time::Instant::now();
    let marked: HashSet<Uuid> = match write::mark_calls(&handler.pool, claim, &ids).await {
        // (Its time is also part of the caller's `group_provider_outcome`.)
        Ok(marked) => {
            crate::sender::stage("group_call_mark", t);
            marked.into_iter().collect()
        }
        // Nothing was called: each message stays claimed with its call not started, and the
        // broker's next delivery of it releases it and sends it again.
        Err(error) => {
            tracing::warn!(%error, group.size = ids.len(), "marking the group's provider calls failed; none was called");
            let retry = |(index, ..): &(usize, _, _)| {
                let outcome = Outcome::retry("the provider calls could not be marked");
                (*index, outcome)
            };
            return (claimed.iter().map(retry).collect(), Vec::new());
        }
    };
    // A message not marked was released meanwhile by another delivery of it (or its claim,
    // not yet durable, was lost with a crash of the database): the one-message path decides it
    // from what is recorded.
    type Member<'m, 'n> = &'m (usize, &'m Message, &'m NewMessage<'n>);
    let (claimed, unmarked): (Vec<Member<'_, '_>>, Vec<Member<'_, '_>>) = claimed
        .iter()
        .partition(|(_, message, _)| marked.contains(&message.id));
    let left = unmarked.iter().map(|(index, ..)| *index).collect();
    let mut decided: Decided = Vec::new();
    let called = join_all(claimed.iter().map(|(_, message, new)| async move {
        if let Some(pause) = handler.switch.pending_cover_except(
            &message.channel,
            &message.kind,
            new.client_id,
            crate::rules::incident_exemption(new.request),
            comms_domain::pause::sequence_of_trigger(&new.request.trigger),
        ) {
            return Called::Held(pause);
        }
        let outbound = outbound(message, new);
        let dispatch = handler.providers.dispatch(&outbound);
        Called::Dispatched(dispatch.instrument(new.span.clone()).await)
    }))
    .await;

    let (mut sent, mut accepted, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for ((index, message, _), called) in claimed.iter().zip(called) {
        let dispatch = match called {
            Called::Held(pause) => {
                others.push((*index, *message, Err(pause)));
                continue;
            }
            Called::Dispatched(dispatch) => dispatch,
        };
        match &dispatch {
            Dispatch::Transient { reason, .. } => {
                handler
                    .breaker
                    .failure(&handler.pool, &handler.switch, &message.channel, reason)
                    .await;
            }
            _ => handler.breaker.success(&message.channel),
        }
        match dispatch {
            Dispatch::Sent {
                provider,
                provider_message_id,
            } => {
                tracing::info!(message.id = %message.id, provider, attempt = 1, "sent");
                sent.push((*index, *message));
                accepted.push(Accepted {
                    message_id: message.id,
                    provider,
                    provider_message_id,
                    attempt: 1,
                });
            }
            other => others.push((*index, *message, Ok(other))),
        }
    }

    match write::record_sent(&handler.pool, &accepted).await {
        Ok(_) => decided.extend(sent.iter().map(|(index, _)| (*index, Outcome::Ack))),
        // Recorded one by one instead, each with its own outcome.
        Err(error) => {
            tracing::warn!(%error, "recording the group's sends failed; recording each alone");
            for ((index, message), accepted) in sent.into_iter().zip(accepted) {
                let dispatch = Dispatch::Sent {
                    provider: accepted.provider,
                    provider_message_id: accepted.provider_message_id,
                };
                others.push((index, message, Ok(dispatch)));
            }
        }
    }
    let recorded = join_all(
        others
            .into_iter()
            .map(|(index, message, result)| async move {
                let outcome = match result {
                    Ok(dispatch) => outcomes::record_dispatch(handler, message, 1, dispatch).await,
                    Err(pause) => outcomes::hold_claimed(handler, message, &pause).await,
                };
                (
                    index,
                    outcome.unwrap_or_else(|e| comms_runtime::db_error::outcome(&e)),
                )
            }),
    )
    .await;
    decided.extend(recorded);
    (decided, left)
}

fn outbound(message: &Message, new: &NewMessage<'_>) -> Outbound {
    Outbound {
        message_id: message.id,
        channel: message.channel.clone(),
        kind: message.kind.clone(),
        contact_id: message.contact_id,
        client_id: new.client_id,
        to: message.recipient_address.clone(),
        subject: new.rendered.subject.clone(),
        body: new.rendered.body.clone(),
    }
}
