//! The group's gates after the rule book: a rate token each without waiting, the order of
//! releases per recipient, and the pause switch's verdict per member. What they clear is claimed
//! together; what they stop goes to the one-message path, which waits or records it there.

use comms_domain::contract::ValidSendRequest;
use comms_runtime::runtime::Incoming;
use uuid::Uuid;

use super::write::NewMessage;
use crate::rules::{self, Decision, Prepared};
use crate::sender::SendHandler;
use crate::store::Message;

/// A member every rule let through, ready for its rate token and the pause switch.
pub(super) struct Ready<'a> {
    pub(super) index: usize,
    pub(super) request: &'a ValidSendRequest,
    pub(super) contact_id: Uuid,
    pub(super) address: String,
    pub(super) prepared: Prepared,
    /// Its recorded message when it came as a release (`None`: a new message).
    pub(super) released: Option<&'a Message>,
}

/// Releases keep their order per recipient: a released member with an older release to the
/// same address still on its way goes to the one-message path, which waits for it.
pub(super) async fn keep_release_order<'a>(
    handler: &SendHandler,
    mut ready: Vec<Ready<'a>>,
    left: &mut Vec<usize>,
) -> Vec<Ready<'a>> {
    let releases: Vec<&Message> = ready.iter().filter_map(|m| m.released).collect();
    let behind = match super::released::behind_older(&handler.pool, &releases).await {
        Ok(behind) => behind,
        // Unknown: every release goes alone, where the one-message path checks again.
        Err(_) => releases.iter().map(|m| m.id).collect(),
    };
    ready.retain(|member| {
        let wait = member.released.is_some_and(|m| behind.contains(&m.id));
        if wait {
            left.push(member.index);
        }
        !wait
    });
    ready
}

/// The rate limit, without waiting: a message that finds no token goes alone and waits for one
/// there, so a group never sends more at once than the limit allows.
pub(super) fn take_tokens<'a>(
    handler: &SendHandler,
    mut ready: Vec<Ready<'a>>,
    left: &mut Vec<usize>,
) -> Vec<Ready<'a>> {
    ready.retain(|member| {
        let channel = member.request.channel.as_str();
        let allowed = handler
            .limits
            .try_take(channel, &handler.providers.account(channel));
        if !allowed {
            left.push(member.index);
        }
        allowed
    });
    ready
}

/// The members the pause gate cleared, to claim: new ones to record and claim, releases to
/// claim, each with its delivery index.
#[derive(Default)]
pub(super) struct Clear<'a> {
    pub(super) new: Vec<NewMessage<'a>>,
    pub(super) new_index: Vec<usize>,
    pub(super) again: Vec<NewMessage<'a>>,
    pub(super) again_index: Vec<usize>,
    pub(super) again_ids: Vec<Uuid>,
}

impl Clear<'_> {
    pub(super) fn all_indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.new_index.iter().chain(&self.again_index).copied()
    }
}

/// The same gate as one message over each member's pause verdict: the members it clears; the
/// others go to `left`. (The order of releases was kept before: [`keep_release_order`].)
pub(super) fn clear_of_pauses<'a>(
    handler: &SendHandler,
    deliveries: &[Incoming],
    ready: Vec<Ready<'a>>,
    left: &mut Vec<usize>,
) -> Clear<'a> {
    let book = handler.book();
    let mut clear = Clear::default();
    for member in ready {
        let request = member.request;
        let verdict = handler.switch.verdict_except(
            request.channel.as_str(),
            request.kind.as_str(),
            member.prepared.client_id,
            rules::incident_exemption(request),
            comms_domain::pause::sequence_of_trigger(&request.trigger),
        );
        let Decision::Send(Prepared {
            client_id,
            content: Some(rendered),
            ..
        }) = book.gate(member.prepared, false, verdict)
        else {
            left.push(member.index);
            continue;
        };
        let span = member_span(&deliveries[member.index]);
        let new = NewMessage {
            traceparent: comms_runtime::trace_context::traceparent_of(&span),
            span,
            request,
            contact_id: member.contact_id,
            address: member.address,
            client_id,
            rendered,
            account: handler.providers.account(request.channel.as_str()),
        };
        match member.released {
            Some(message) => {
                clear.again.push(new);
                clear.again_index.push(member.index);
                clear.again_ids.push(message.id);
            }
            None => {
                clear.new.push(new);
                clear.new_index.push(member.index);
            }
        }
    }
    clear
}

/// The span of one member's send, in the trace its request came with (the group's own span
/// links to every member's trace): its context is stored on the message, and its provider call
/// runs in it, as on the one-message path.
pub(super) fn member_span(delivery: &Incoming) -> tracing::Span {
    let span = tracing::info_span!(
        "message",
        queue.name = %delivery.queue,
        message.amqp_id = delivery.message_id.as_deref().unwrap_or(""),
    );
    comms_runtime::trace_context::set_parent_from(&delivery.headers, &span);
    span
}
