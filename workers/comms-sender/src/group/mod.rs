//! Sending a group of deliveries at once: the path most messages take under load.
//!
//! A new, ordinary message — no approval (other than an incident notice's, which its notice's
//! decision gives), no AI review, no portal wording, no `send_after` in the future, no quiet
//! hours, a known contact who has not opted out, an existing record and an approved template that
//! renders — is decided together with the others of its group: four or five reads for the group,
//! one statement that records and claims them all, the provider calls side by
//! side, one statement that records every acceptance. Each step is the same check as the
//! one-message path in [`crate::one`], in the same order, with the pause check the last thing
//! before the provider call; every effect is committed before the group's outcomes go back to the
//! runtime, which acks each delivery only then.
//!
//! Everything else — a duplicate or redelivery, anything that would be blocked, held, deferred or
//! approved, a provider failure — is handed to the one-message path, which owns those rules. A
//! message is never decided by both: the group records only keys that are new, and the one-message
//! path runs for a key only after the group is done with it.

mod dispatch;
mod lookup;
mod write;

use std::collections::{HashMap, HashSet};

use comms_domain::contract::{Channel, Kind, ValidSendRequest};
use comms_domain::pause::switch::Verdict;
use comms_runtime::db_error;
use comms_runtime::runtime::{Incoming, Outcome};
use futures_util::future::join_all;
use tracing::Instrument;

use crate::portal_safe;
use crate::preflight;
use crate::render;
use crate::sender::{SendHandler, stage};
use write::NewMessage;

/// Decides `deliveries`, one outcome each, in order.
pub async fn handle(handler: &SendHandler, deliveries: &[Incoming]) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; deliveries.len()];
    let mut candidates: Vec<(usize, ValidSendRequest)> = Vec::new();
    let mut alone_now = Vec::new();
    let mut alone_after = Vec::new();
    let mut keys = HashSet::new();
    let now = handler.clock.now();
    for (index, delivery) in deliveries.iter().enumerate() {
        match crate::intake::accept(delivery) {
            Err(refused) => outcomes[index] = Some(refused),
            // The same key twice in one group: the second waits until the first is decided.
            Ok(request) if !keys.insert(request.idempotency_key.clone()) => {
                alone_after.push(index);
            }
            Ok(request) if ordinary(&request, now) => candidates.push((index, request)),
            Ok(_) => alone_now.push(index),
        }
    }
    metrics().observe(candidates.len() as f64);

    // Each in its own message's trace, not the group's: the one-message path stores the current
    // span's context with the message it records.
    let one_by_one = |indexes: Vec<usize>| {
        join_all(indexes.into_iter().map(|i| async move {
            let span = member_span(&deliveries[i]);
            (
                i,
                crate::one::handle(handler, &deliveries[i])
                    .instrument(span)
                    .await,
            )
        }))
    };
    let ((decided, left), others) = tokio::join!(
        send_together(handler, deliveries, candidates),
        one_by_one(alone_now)
    );
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
/// A step of a sequence (trigger `sequence:<name>`), which a sequence pause holds, is not one.
/// An SMS or email notice of an incident is one: the decision on its notice is its approval
/// ([`lookup::Known::notice_cleared`]), and it passes its own incident's pauses.
fn ordinary(request: &ValidSendRequest, now: chrono::DateTime<chrono::Utc>) -> bool {
    matches!(request.channel, Channel::Sms | Channel::Email)
        && !matches!(request.kind, Kind::Outreach | Kind::ReviewRequest)
        && comms_domain::pause::sequence_of_trigger(&request.trigger).is_none()
        && (!preflight::needs_approval(request) || incident_notice(request))
        && !portal_safe::applies(request)
        && !request.ai_draft
        && request.send_after.is_none_or(|at| at <= now)
}

/// An incident notice attached to its incident: cleared by the decision on its notice.
fn incident_notice(request: &ValidSendRequest) -> bool {
    preflight::incident_exemption(request).is_some()
}

fn metrics() -> &'static prometheus::Histogram {
    static SIZE: std::sync::LazyLock<prometheus::Histogram> = std::sync::LazyLock::new(|| {
        comms_runtime::metrics::histogram(
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
    deliveries: &[Incoming],
    candidates: Vec<(usize, ValidSendRequest)>,
) -> (Decided, Vec<usize>) {
    if candidates.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let t = std::time::Instant::now();
    let requests: Vec<&ValidSendRequest> = candidates.iter().map(|(_, r)| r).collect();
    let known = match lookup::load(&handler.pool, &requests).await {
        Ok(known) => known,
        Err(error) if db_error::is_transient(&error) => {
            let decided = candidates
                .iter()
                .map(|(index, _)| (*index, db_error::outcome(&error)))
                .collect();
            return (decided, Vec::new());
        }
        // One member's content broke the group's read: each is decided on its own.
        Err(error) => {
            return (
                Vec::new(),
                one_by_one(&error, candidates.iter().map(|c| c.0)),
            );
        }
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
        let client = contact.and_then(|c| known.record_client(request, c.contact_id));
        let rendered = render::render_row(known.template(request), request).ok();
        // An incident notice whose notice is not cleared waits for its decision alone.
        let cleared = !incident_notice(request) || known.notice_cleared(request);
        match (contact, client, rendered) {
            _ if !cleared => left.push(*index),
            (Some(contact), Some(client_id), Some(rendered)) => {
                ready.push((*index, request, contact, client_id, rendered));
            }
            _ => left.push(*index),
        }
    }
    let t = stage("group_preflight_render", t);
    // The rate limit, without waiting: a message that finds no token goes alone and waits for
    // one there, so a group never sends more at once than the limit allows.
    ready.retain(|(index, request, ..)| {
        let channel = request.channel.as_str();
        let allowed = handler
            .limits
            .try_take(channel, &handler.providers.account(channel));
        if !allowed {
            left.push(*index);
        }
        allowed
    });
    // The pause switch, once for the group: one guard (so a pause being applied waits for these
    // dispatches, and none starts after it), a verdict per message.
    let Some((_, first, ..)) = ready.first() else {
        return (Vec::new(), left);
    };
    let (_dispatching, _) = handler
        .switch
        .enter(first.channel.as_str(), first.kind.as_str(), None)
        .await;
    let (mut clear, mut clear_index) = (Vec::new(), Vec::new());
    for (index, request, contact, client_id, rendered) in &ready {
        let verdict = handler.switch.verdict_except(
            request.channel.as_str(),
            request.kind.as_str(),
            *client_id,
            preflight::incident_exemption(request),
            None,
        );
        if verdict == Verdict::Clear {
            clear_index.push(*index);
            let span = member_span(&deliveries[*index]);
            clear.push(NewMessage {
                traceparent: comms_runtime::trace_context::traceparent_of(&span),
                span,
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
        Err(error) if db_error::is_transient(&error) => {
            let decided = clear_index
                .iter()
                .map(|index| (*index, db_error::outcome(&error)))
                .collect();
            return (decided, left);
        }
        // The statement recorded nothing; one member's content is refused for good, so each
        // is decided on its own and only that one is rejected (as after a panic).
        Err(error) => {
            left.extend(one_by_one(&error, clear_index.iter().copied()));
            return (Vec::new(), left);
        }
    };
    let t = stage("group_record_claim", t);
    let position: HashMap<&str, usize> = clear
        .iter()
        .enumerate()
        .map(|(at, m)| (m.request.idempotency_key.as_str(), at))
        .collect();
    let mut mine = Vec::new();
    let mut taken = vec![false; clear.len()];
    for message in &claimed {
        if let Some(&at) = position.get(message.idempotency_key.as_str()) {
            taken[at] = true;
            mine.push((clear_index[at], message, &clear[at]));
        }
    }
    // Keys that already existed were not claimed here: the one-message path decides them.
    left.extend(
        (0..clear.len())
            .filter(|at| !taken[*at])
            .map(|at| clear_index[at]),
    );
    let decided = dispatch::send_claimed(handler, &mine).await;
    stage("group_provider_outcome", t);
    (decided, left)
}

/// The span of one member's send, in the trace its request came with (the group's own span
/// links to every member's trace): its context is stored on the message, and its provider call
/// runs in it, as on the one-message path.
fn member_span(delivery: &Incoming) -> tracing::Span {
    let span = tracing::info_span!(
        "message",
        queue.name = %delivery.queue,
        message.amqp_id = delivery.message_id.as_deref().unwrap_or(""),
    );
    comms_runtime::trace_context::set_parent_from(&delivery.headers, &span);
    span
}

/// The members of a group whose statement the database refused for good, handed to the
/// one-message path.
fn one_by_one(error: &sqlx::Error, members: impl Iterator<Item = usize>) -> Vec<usize> {
    let members: Vec<usize> = members.collect();
    tracing::warn!(
        error.sqlstate = sqlstate(error),
        group.size = members.len(),
        "the database refused a group statement; deciding its members one by one"
    );
    members
}

fn sqlstate(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()).unwrap_or_default(),
        _ => String::new(),
    }
}
