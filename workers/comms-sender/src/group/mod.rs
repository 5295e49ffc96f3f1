//! Sending a group of deliveries at once: the path most messages take under load.
//!
//! A new, ordinary message — no approval, no AI review, no portal wording, no `send_after` in the
//! future, no quiet hours, a known contact who has not opted out, an existing record and an
//! approved template that renders — is decided together with the others of its group: four reads
//! for the group, one statement that records and claims them all, the provider calls side by
//! side, one statement that records every acceptance. Each step is the same check as the
//! one-message path in [`crate::handler`], in the same order, with the pause check the last thing
//! before the provider call; every effect is committed before the group's outcomes go back to the
//! runtime, which acks each delivery only then.
//!
//! Everything else — a duplicate or redelivery, anything that would be blocked, held, deferred or
//! approved, a provider failure — is handed to the one-message path, which owns those rules. A
//! message is never decided by both: the group records only keys that are new, and the one-message
//! path runs for a key only after the group is done with it.

mod lookup;
mod write;

use std::collections::HashSet;

use comms_shared::contract::{Channel, Kind, ValidSendRequest, parse_send_request};
use comms_shared::pause::switch::Verdict;
use comms_shared::runtime::{Handler, Incoming, Outcome};
use futures_util::future::join_all;

use crate::handler::{SendHandler, stage};
use crate::outcomes;
use crate::portal_safe;
use crate::preflight;
use crate::providers::{Dispatch, Outbound};
use crate::render;
use write::{Accepted, NewMessage};

/// Decides `deliveries`, one outcome each, in order.
pub async fn handle(handler: &SendHandler, deliveries: &[Incoming]) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; deliveries.len()];
    let mut candidates: Vec<(usize, ValidSendRequest)> = Vec::new();
    let mut alone_now = Vec::new();
    let mut alone_after = Vec::new();
    let mut keys = HashSet::new();
    let now = handler.clock.now();
    for (index, delivery) in deliveries.iter().enumerate() {
        match parse_send_request(&delivery.body) {
            Err(errors) => {
                outcomes[index] = Some(Outcome::reject(format!(
                    "{}: {errors}",
                    errors.reason_code()
                )));
            }
            // The same key twice in one group: the second waits until the first is decided.
            Ok(request) if !keys.insert(request.idempotency_key.clone()) => {
                alone_after.push(index);
            }
            Ok(request) if ordinary(&request, now) => candidates.push((index, request)),
            Ok(_) => alone_now.push(index),
        }
    }
    metrics().observe(candidates.len() as f64);

    let one_by_one = |indexes: Vec<usize>| {
        join_all(
            indexes
                .into_iter()
                .map(|i| async move { (i, handler.handle(&deliveries[i]).await) }),
        )
    };
    let ((decided, left), others) =
        tokio::join!(send_together(handler, candidates), one_by_one(alone_now));
    for (index, outcome) in decided.into_iter().chain(others) {
        outcomes[index] = Some(outcome);
    }
    alone_after.extend(left);
    for (index, outcome) in one_by_one(alone_after).await {
        outcomes[index] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::retry("not decided in its group")))
        .collect()
}

/// A request the group path may decide: none of the rules that need the one-message path apply.
fn ordinary(request: &ValidSendRequest, now: chrono::DateTime<chrono::Utc>) -> bool {
    matches!(request.channel, Channel::Sms | Channel::Email)
        && !matches!(request.kind, Kind::Outreach | Kind::ReviewRequest)
        && !preflight::needs_approval(request)
        && !portal_safe::applies(request)
        && !request.ai_draft
        && request.send_after.is_none_or(|at| at <= now)
}

fn metrics() -> &'static prometheus::Histogram {
    static SIZE: std::sync::LazyLock<prometheus::Histogram> = std::sync::LazyLock::new(|| {
        comms_shared::metrics::histogram(
            "comms_sender_group_size",
            "New ordinary send requests decided together in one group",
            &[],
        )
        .with_label_values::<&str>(&[])
    });
    &SIZE
}

type Decided = Vec<(usize, Outcome)>;

/// Sends what it can of `candidates` together. Returns the outcomes it decided and the indexes
/// it leaves to the one-message path.
async fn send_together(
    handler: &SendHandler,
    candidates: Vec<(usize, ValidSendRequest)>,
) -> (Decided, Vec<usize>) {
    if candidates.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let t = std::time::Instant::now();
    let requests: Vec<&ValidSendRequest> = candidates.iter().map(|(_, r)| r).collect();
    let known = match lookup::load(&handler.pool, &requests).await {
        Ok(known) => known,
        Err(error) => return (all_retry(&candidates, &error), Vec::new()),
    };
    // Preflight and render from what was read; anything that would not pass goes alone, where
    // it is recorded and refused with its reason.
    let mut left = Vec::new();
    let mut ready = Vec::new();
    for (index, request) in &candidates {
        // Already recorded: its state decides what happens, and the one-message path reads it.
        if known.is_recorded(request) {
            left.push(*index);
            continue;
        }
        let contact = known
            .contact(request)
            .filter(|c| !matches!(c.consent_state.as_str(), "opted_out" | "suppressed"));
        let client = known.record_client(request);
        let rendered = render::render_row(known.template(request), request).ok();
        match (contact, client, rendered) {
            (Some(contact), Some(client_id), Some(rendered)) => {
                ready.push((*index, request, contact, client_id, rendered));
            }
            _ => left.push(*index),
        }
    }
    let t = stage("group_preflight_render", t);
    for (_, request, ..) in &ready {
        let channel = request.channel.as_str();
        let account = handler.providers.account(channel);
        handler.limits.until_ready(channel, &account).await;
    }
    // The pause switch, once for the group: one guard (so a pause being applied waits for these
    // dispatches, and none starts after it), a verdict per message.
    let Some((_, first, ..)) = ready.first() else {
        return (Vec::new(), left);
    };
    let (_dispatching, _) = handler
        .switch
        .enter(first.channel.as_str(), first.kind.as_str(), None)
        .await;
    let mut clear = Vec::new();
    for (index, request, contact, client_id, rendered) in &ready {
        let verdict =
            handler
                .switch
                .verdict(request.channel.as_str(), request.kind.as_str(), *client_id);
        if verdict == Verdict::Clear {
            clear.push(NewMessage {
                request,
                contact_id: contact.contact_id,
                address: &contact.address,
                client_id: *client_id,
                rendered,
                account: handler.providers.account(request.channel.as_str()),
            });
        } else {
            left.push(*index);
        }
    }
    let t = stage("group_rate_gate", t);
    let claimed = match write::record_and_claim(&handler.pool, &clear).await {
        Ok(claimed) => claimed,
        Err(error) => {
            let decided = all_retry(&candidates, &error);
            return (decided, Vec::new());
        }
    };
    let t = stage("group_record_claim", t);
    let index_of = |key: &str| {
        ready
            .iter()
            .find(|(_, r, ..)| r.idempotency_key == key)
            .map(|(i, ..)| *i)
    };
    // Keys that already existed were not claimed here: the one-message path decides them.
    let claimed_keys: HashSet<&str> = claimed.iter().map(|m| m.idempotency_key.as_str()).collect();
    left.extend(
        clear
            .iter()
            .filter(|m| !claimed_keys.contains(m.request.idempotency_key.as_str()))
            .filter_map(|m| index_of(&m.request.idempotency_key)),
    );

    let mut decided = Vec::new();
    let mut outbound = Vec::new();
    for message in &claimed {
        let Some(new) = clear
            .iter()
            .find(|n| n.request.idempotency_key == message.idempotency_key)
        else {
            continue;
        };
        let Some(index) = index_of(&message.idempotency_key) else {
            continue;
        };
        // A pause read while this group was claiming: stop before the provider.
        if let Some(pause) =
            handler
                .switch
                .pending_cover(&message.channel, &message.kind, new.client_id)
        {
            let outcome = outcomes::hold_claimed(handler, message, &pause).await;
            decided.push((index, outcome.unwrap_or_else(database_retry)));
            continue;
        }
        outbound.push((
            index,
            message,
            Outbound {
                message_id: message.id,
                channel: message.channel.clone(),
                kind: message.kind.clone(),
                contact_id: message.contact_id,
                client_id: new.client_id,
                to: message.recipient_address.clone(),
                subject: new.rendered.subject.clone(),
                body: new.rendered.body.clone(),
            },
        ));
    }
    let dispatches = join_all(
        outbound
            .iter()
            .map(|(_, _, out)| handler.providers.dispatch(out)),
    )
    .await;
    let t = stage("group_provider", t);
    let (mut sent, mut accepted, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for ((index, message, _), dispatch) in outbound.iter().zip(dispatches) {
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
            other => others.push((*index, *message, other)),
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
                others.push((index, message, dispatch));
            }
        }
    }
    for (index, message, dispatch) in others {
        let outcome = outcomes::record_dispatch(handler, message, 1, dispatch).await;
        decided.push((index, outcome.unwrap_or_else(database_retry)));
    }
    stage("group_outcome", t);
    (decided, left)
}

fn database_retry(error: sqlx::Error) -> Outcome {
    Outcome::retry(format!("database unavailable: {error}"))
}

fn all_retry(candidates: &[(usize, ValidSendRequest)], error: &sqlx::Error) -> Decided {
    candidates
        .iter()
        .map(|(index, _)| {
            (
                *index,
                Outcome::retry(format!("database unavailable: {error}")),
            )
        })
        .collect()
}
