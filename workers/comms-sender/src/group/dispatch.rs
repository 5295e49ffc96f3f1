//! The provider calls of a group's claimed messages and the recording of what came back.
//!
//! The claim that recorded the messages also marked their calls as started
//! ([`write::record_and_claim`]); the calls follow its commit with nothing awaited in between, so
//! a group whose process dies before that commit recorded nothing and is sent again after
//! recovery, never failed as `dispatch_outcome_unknown`. Each call is preceded, with nothing in
//! between, by the check for a pause read while the group was claiming (as on the one-message
//! path); a message it covers is held instead. Acceptances are recorded in one statement; holds, failures and
//! retries each through the one-message outcome code, side by side.

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

/// What became of one claimed message at the provider's door.
enum Called {
    /// The provider's name in the channel's order, and its answer.
    Dispatched(&'static str, Dispatch),
    /// A pending pause covered it: never sent.
    Held(ActivePause),
}

/// Sends every claimed message (delivery index, message, what was claimed) and records each
/// outcome; returns the outcome of every delivery.
pub(super) async fn send_claimed(
    handler: &SendHandler,
    claimed: &[(usize, &Message, &NewMessage<'_>)],
) -> Decided {
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
        let (via, dispatch) = dispatch.instrument(new.span.clone()).await;
        Called::Dispatched(via, dispatch)
    }))
    .await;

    let (mut sent, mut accepted, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for ((index, message, _), called) in claimed.iter().zip(called) {
        let (via, dispatch) = match called {
            Called::Held(pause) => {
                others.push((*index, *message, Err(pause)));
                continue;
            }
            Called::Dispatched(via, dispatch) => (via, dispatch),
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
                    via,
                    provider_message_id,
                    attempt: 1,
                });
            }
            other => others.push((*index, *message, Ok((via, other)))),
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
                others.push((index, message, Ok((accepted.via, dispatch))));
            }
        }
    }
    let recorded = join_all(
        others
            .into_iter()
            .map(|(index, message, result)| async move {
                let outcome = match result {
                    Ok((via, dispatch)) => {
                        outcomes::record_dispatch(handler, message, 1, dispatch, via).await
                    }
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
    decided
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
