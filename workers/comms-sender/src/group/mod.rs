//! Sending a group of deliveries at once: the path most messages take under load.
//!
//! The group path applies no rule of its own. It loads the facts of the whole group with the one
//! loader ([`crate::rules::facts`]: one statement per kind of fact for the group), asks the same
//! [`crate::rules::Book::decide`] as the one-message path for each member, and sends together
//! the members decided [`Decision::Dispatch`]: a rate token each without waiting, the same
//! [`crate::rules::Book::gate`] over the pause switch's verdicts, one statement that records and
//! claims them all and marks their provider calls as started (its commit comes right before the
//! first call), the calls side by side, one statement that records every acceptance. Every effect is
//! committed before the group's outcomes go back to the runtime, which acks each delivery only
//! then.
//!
//! Every member decided otherwise (blocked, deferred, waiting for approval, held), already
//! recorded, without a token, or refused by a provider is handed to the one-message path, which
//! records it; so is a kind whose effects the group path does not take together ([`groupable`]). A message is
//! never decided by both: the group records only keys that are new, and the one-message path
//! runs for a key only after the group is done with it.

mod dispatch;
mod gate;
mod released;
mod write;

use std::collections::{HashMap, HashSet};

use comms_domain::contract::{Channel, Kind, RecordType, ValidSendRequest};
use comms_runtime::db_error;
use comms_runtime::runtime::{Incoming, Outcome};
use futures_util::future::join_all;
use tracing::Instrument;
use uuid::Uuid;

use crate::rules::facts::{self, Member};
use crate::rules::{self, Decision};
use crate::sender::{SendHandler, stage};
use crate::store::Message;
use gate::{Ready, clear_of_pauses, keep_release_order, member_span, take_tokens};
use write::NewMessage;

/// Decides `deliveries`, one outcome each, in order.
pub async fn handle(handler: &SendHandler, deliveries: &[Incoming]) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; deliveries.len()];
    let mut candidates: Vec<(usize, ValidSendRequest)> = Vec::new();
    let mut alone_now = Vec::new();
    let mut alone_after = Vec::new();
    let mut keys = HashSet::new();
    for (index, delivery) in deliveries.iter().enumerate() {
        match crate::intake::accept(delivery) {
            Err(refused) => outcomes[index] = Some(refused),
            // The same key twice in one group: the second waits until the first is decided.
            Ok(request) if !keys.insert(request.idempotency_key.clone()) => {
                alone_after.push(index);
            }
            Ok(request) if groupable(&request) => candidates.push((index, request)),
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

/// A request whose effects the group path takes together; the rules are [`crate::rules`]'s, not decided here.
/// Left to the one-message path: the portal channel (its recipient is resolved to a contact and
/// its wording checked on a recorded message), outreach and review requests (they keep the
/// consent a request brings and carry a link signed over a recorded message's id), and what
/// needs an approval or a review recorded on a message (an AI draft, any approval-gated kind but
/// an incident notice, which its notice's decision covers); and a message attached to an
/// incident but addressed by phone or email (the loader reads an incident message's client
/// through its contact).
fn groupable(request: &ValidSendRequest) -> bool {
    matches!(request.channel, Channel::Sms | Channel::Email)
        && !matches!(request.kind, Kind::Outreach | Kind::ReviewRequest)
        && (!rules::needs_approval(request) || rules::incident_exemption(request).is_some())
        && !request.ai_draft
        && (request.record.record_type != RecordType::Incident
            || request.recipient.contact_id().is_some())
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
    let mut left = Vec::new();
    // A release whose message cannot be read here is left to the one-message path, which reads it.
    let found = released::find(&handler.pool, deliveries, &candidates)
        .await
        .unwrap_or_default();
    let ready = match decide(handler, &candidates, &found, &mut left).await {
        Ok(ready) => ready,
        Err(unread) => return unread,
    };
    let t = stage("group_preflight_render", t);
    let ready = take_tokens(handler, ready, &mut left);
    let ready = keep_release_order(handler, ready, &mut left).await;
    // The pause switch, once for the group: one guard, held until every outcome is recorded (so
    // a pause being applied waits for these dispatches, and none starts after it), a verdict
    // per message.
    let Some(first) = ready.first() else {
        return (Vec::new(), left);
    };
    let (_dispatching, _) = handler
        .switch
        .enter(
            first.request.channel.as_str(),
            first.request.kind.as_str(),
            None,
        )
        .await;
    let clear = clear_of_pauses(handler, deliveries, ready, &mut left);
    let t = stage("group_rate_gate", t);
    let claim = Uuid::new_v4();
    let again: Vec<(&NewMessage<'_>, Uuid)> = clear
        .again
        .iter()
        .zip(&clear.again_ids)
        .map(|(member, id)| (member, *id))
        .collect();
    let claimed = write::claim_both(handler, &clear.new, &again, claim).await;
    let (claimed_new, claimed_again) = match claimed {
        Ok(claimed) => claimed,
        Err(error) => {
            if db_error::is_transient(&error) {
                let decided = clear
                    .all_indexes()
                    .map(|index| (index, db_error::outcome(&error)))
                    .collect();
                return (decided, left);
            }
            // One member's content is refused for good: each is decided on its own and only
            // that one is rejected (as after a panic).
            left.extend(one_by_one(&error, clear.all_indexes()));
            return (Vec::new(), left);
        }
    };
    let t = stage("group_record_claim", t);
    let mut mine = Vec::new();
    // Keys that already existed were not claimed here, nor releases another delivery claimed
    // first: the one-message path decides them.
    let new_at: HashMap<&str, usize> = clear
        .new
        .iter()
        .enumerate()
        .map(|(at, m)| (m.request.idempotency_key.as_str(), at))
        .collect();
    let mut taken = vec![false; clear.new.len()];
    for message in &claimed_new {
        if let Some(&at) = new_at.get(message.idempotency_key.as_str()) {
            taken[at] = true;
            mine.push((clear.new_index[at], message, &clear.new[at]));
        }
    }
    left.extend(
        (0..clear.new.len())
            .filter(|at| !taken[*at])
            .map(|at| clear.new_index[at]),
    );
    let again_at: HashMap<Uuid, usize> = clear
        .again_ids
        .iter()
        .enumerate()
        .map(|(at, id)| (*id, at))
        .collect();
    let mut taken = vec![false; clear.again.len()];
    for message in &claimed_again {
        if let Some(&at) = again_at.get(&message.id) {
            taken[at] = true;
            mine.push((clear.again_index[at], message, &clear.again[at]));
        }
    }
    left.extend(
        (0..clear.again.len())
            .filter(|at| !taken[*at])
            .map(|at| clear.again_index[at]),
    );
    let decided = dispatch::send_claimed(handler, &mine).await;
    stage("group_provider_outcome", t);
    (decided, left)
}

/// Loads the group's facts and asks the rule book about each member: the members decided
/// "dispatch"; the others go to `left`, where the one-message path decides them again, records
/// and settles them. `Err` when the group's facts could not be read: what to answer instead.
async fn decide<'a>(
    handler: &SendHandler,
    candidates: &'a [(usize, ValidSendRequest)],
    found: &'a HashMap<String, Message>,
    left: &mut Vec<usize>,
) -> Result<Vec<Ready<'a>>, (Decided, Vec<usize>)> {
    let members: Vec<Member<'_>> = candidates
        .iter()
        .map(|(_, request)| Member {
            request,
            message: found.get(&request.idempotency_key),
        })
        .collect();
    let all_facts = match facts::load(&handler.pool, &members).await {
        Ok(all_facts) => all_facts,
        Err(error) if db_error::is_transient(&error) => {
            let decided = candidates
                .iter()
                .map(|(index, _)| (*index, db_error::outcome(&error)))
                .collect();
            return Err((decided, Vec::new()));
        }
        // One member's content broke the group's read: each is decided on its own.
        Err(error) => {
            return Err((
                Vec::new(),
                one_by_one(&error, candidates.iter().map(|c| c.0)),
            ));
        }
    };
    let (book, now) = (handler.book(), handler.clock.now());
    let mut ready = Vec::new();
    for ((index, request), facts) in candidates.iter().zip(all_facts) {
        // Already recorded (but a release): its state decides what happens, and the
        // one-message path reads it. No address on the channel: the one-message path records it
        // (or refuses it). A release goes to the address it was recorded with, as alone.
        let released = found.get(&request.idempotency_key);
        let recipient = match released {
            Some(message) => Some((message.contact_id, Some(message.recipient_address.clone()))),
            None => facts
                .contact
                .as_ref()
                .filter(|_| !facts.recorded)
                .map(|c| (c.contact_id, c.address.clone())),
        };
        let Some((contact_id, Some(address))) = recipient else {
            left.push(*index);
            continue;
        };
        match book.decide(request, &facts, now) {
            Decision::Dispatch(prepared) if !prepared.keep_consent => ready.push(Ready {
                index: *index,
                request,
                contact_id,
                address,
                prepared,
                released,
            }),
            _ => left.push(*index),
        }
    }
    Ok(ready)
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
