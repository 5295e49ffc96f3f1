//! The one loader of what the rules need ([`Facts`]), for a group of send requests at once; the
//! one-message path loads a group of one.
//!
//! Six lookups, side by side, one statement each for the whole group, and only those the group
//! needs (a lookup no member needs issues no statement; a recorded message that can no longer be
//! dispatched needs none, its state decides it): which keys are already recorded, the
//! contacts with their consent and time zone, the records' clients (and the recipient contacts'
//! clients of messages attached to an incident), the template versions, the incident notices'
//! decisions and the approvals recorded on the messages. Then, for a review request, whether its
//! client has a review destination and, for a report digest, whether its digest's approval covers
//! the wording it renders to: those two exist only on the one-message path (the group path does
//! not take review requests or digests), one statement per message.

mod queries;

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use comms_domain::contract::{Kind, RecordType, ValidSendRequest};
use comms_domain::incidents::parse_notice_key;
use futures_util::future::try_join_all;
use queries::{approvals, contacts, destination, digest, notices, recorded, records, templates};
use sqlx::PgPool;
use uuid::Uuid;

use crate::render::TemplateRow;
use crate::store::Message;
use comms_domain::messages::DeliveryState;

/// One request to load facts for, with its message when it is already recorded.
#[derive(Clone, Copy)]
pub struct Member<'a> {
    pub request: &'a ValidSendRequest,
    pub message: Option<&'a Message>,
}

/// The recipient contact as the rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Contact {
    pub contact_id: Uuid,
    pub channel: String,
    /// Its address on the request's channel (none: the contact has no such channel).
    pub address: Option<String>,
    pub consent_state: Option<String>,
    pub time_zone: Option<String>,
}

/// The wording a report digest's approval was compared with, and whether it covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestClearance {
    pub subject: Option<String>,
    pub body: String,
    pub cleared: bool,
}

/// Everything the rules know about one request.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The message recorded under the request's key (the one-message path records first).
    pub message: Option<Message>,
    /// How long the recorded message has been in its state, by the wall clock.
    pub unchanged_for: Duration,
    /// How long ago the provider call of its current claim started, by the wall clock (none: not
    /// started, or not recorded).
    pub call_started_for: Option<Duration>,
    /// The key is recorded already (all the group path reads of a recorded message).
    pub recorded: bool,
    pub contact: Option<Contact>,
    /// The attached record's client: `None` if the record does not exist, `Some(None)` if it
    /// exists and belongs to no client. For an incident, the recipient contact's client when it
    /// has one: one incident affects many clients, so client-scoped pauses and
    /// `portal.delivery_status` see each affected client's own messages.
    pub record_client: Option<Option<Uuid>>,
    /// The version the request names, or the latest (approved first) of its name.
    pub template: Option<TemplateRow>,
    /// An incident notice's decision (`approved`, `rejected`), covering its send requests.
    pub notice: Option<&'static str>,
    /// The latest decisions on the message, per content hash: (hash, decision).
    pub approvals: Vec<(String, String)>,
    pub digest: Option<DigestClearance>,
    /// The record's client has a review destination (review requests only).
    pub review_destination: bool,
}

/// Loads the facts of every member, in order.
pub async fn load(pool: &PgPool, members: &[Member<'_>]) -> Result<Vec<Facts>, sqlx::Error> {
    // A recorded message that can no longer be dispatched is decided by its state alone (a
    // redelivery or a duplicate): nothing else is read for it.
    let open: Vec<Member<'_>> = members
        .iter()
        .filter(|m| {
            m.message.is_none_or(|x| {
                DeliveryState::DISPATCHABLE_NAMES.contains(&x.delivery_state.as_str())
            })
        })
        .copied()
        .collect();
    if open.is_empty() {
        return Ok(members.iter().map(state_only).collect());
    }
    let requests: Vec<&ValidSendRequest> = open.iter().map(|m| m.request).collect();
    let (recorded, contacts, records, templates, notices, approvals) = tokio::try_join!(
        recorded(pool, &open),
        contacts(pool, &open),
        records(pool, &open),
        templates(pool, &requests),
        notices(pool, &requests),
        approvals(pool, &open),
    )?;
    let mut all: Vec<Facts> = members
        .iter()
        .map(|member| {
            let request = member.request;
            let contact = contact_of(&contacts, member).cloned();
            let record_client = record_client(&records, request, contact.as_ref());
            let message = member.message.cloned();
            Facts {
                unchanged_for: unchanged_for(member),
                call_started_for: call_started_for(member),
                recorded: message.is_some() || recorded.contains(&request.idempotency_key),
                approvals: message
                    .as_ref()
                    .and_then(|m| approvals.get(&m.id).cloned())
                    .unwrap_or_default(),
                message,
                contact,
                record_client,
                template: template_of(&templates, request).cloned(),
                notice: parse_notice_key(&request.idempotency_key)
                    .filter(|_| request.kind == Kind::IncidentNotice)
                    .and_then(|n| notices.get(&n).copied()),
                digest: None,
                review_destination: false,
            }
        })
        .collect();
    let (destinations, digests) = tokio::try_join!(
        try_join_all(
            members
                .iter()
                .zip(&all)
                .map(|(m, f)| destination(pool, m, f))
        ),
        try_join_all(members.iter().zip(&all).map(|(m, f)| digest(pool, m, f))),
    )?;
    for ((facts, destination), digest) in all.iter_mut().zip(destinations).zip(digests) {
        facts.review_destination = destination;
        facts.digest = digest;
    }
    Ok(all)
}

/// The facts of a member whose recorded state alone decides it.
fn state_only(member: &Member<'_>) -> Facts {
    Facts {
        message: member.message.cloned(),
        unchanged_for: unchanged_for(member),
        call_started_for: call_started_for(member),
        recorded: member.message.is_some(),
        ..Facts::default()
    }
}

/// How long the member's recorded message has been in its state, by the wall clock.
fn unchanged_for(member: &Member<'_>) -> Duration {
    member
        .message
        .and_then(|m| (Utc::now() - m.updated_at).to_std().ok())
        .unwrap_or_default()
}

/// How long ago the provider call of the member's message started, by the wall clock (a call
/// stamped in the future by a skewed clock started just now).
fn call_started_for(member: &Member<'_>) -> Option<Duration> {
    let started = member.message?.call_started_at?;
    Some((Utc::now() - started).to_std().unwrap_or_default())
}

/// Loads the requested (or latest approved) version through the one loader and renders it with
/// the request's vars: how the digest worker renders a report (`comms_sender::render_request`).
pub async fn render(
    pool: &PgPool,
    request: &ValidSendRequest,
) -> Result<crate::render::Rendered, crate::render::RenderError> {
    let row = template(pool, request).await?;
    crate::render::render_row(row.as_ref(), request)
}

/// The template version `request` names (or the latest, approved first), alone.
pub async fn template(
    pool: &PgPool,
    request: &ValidSendRequest,
) -> Result<Option<TemplateRow>, sqlx::Error> {
    let found = templates(pool, &[request]).await?;
    Ok(template_of(&found, request).cloned())
}

fn contact_of<'a>(contacts: &'a [Contact], member: &Member<'_>) -> Option<&'a Contact> {
    let channel = member.request.channel.as_str();
    match contact_ref(member) {
        Some(id) => contacts
            .iter()
            .find(|c| c.contact_id == id && c.channel == channel),
        None => {
            let address = address_of(member.request);
            contacts
                .iter()
                .find(|c| c.channel == channel && c.address.as_deref() == Some(address))
        }
    }
}

/// The contact a member names: its message's, else the request's `contact_id`.
pub(super) fn contact_ref(member: &Member<'_>) -> Option<Uuid> {
    member
        .message
        .map(|m| m.contact_id)
        .or(member.request.recipient.contact_id())
}

/// A bare phone or email recipient's address (empty for a contact recipient).
pub fn address_of(request: &ValidSendRequest) -> &str {
    let recipient = &request.recipient;
    recipient.phone().or(recipient.email()).unwrap_or_default()
}

pub(super) type Records = HashMap<(String, Uuid), Option<Uuid>>;

fn record_client(
    records: &Records,
    request: &ValidSendRequest,
    contact: Option<&Contact>,
) -> Option<Option<Uuid>> {
    let key = (
        request.record.record_type.as_str().to_string(),
        request.record.id,
    );
    let client = records.get(&key).copied()?;
    if request.record.record_type != RecordType::Incident {
        return Some(client);
    }
    let contact_client = contact
        .and_then(|c| records.get(&("contact".to_string(), c.contact_id)).copied())
        .flatten();
    Some(contact_client.or(client))
}

pub(super) type Templates = (
    HashMap<String, TemplateRow>,
    HashMap<(String, i32), TemplateRow>,
);

fn template_of<'a>(
    templates: &'a Templates,
    request: &ValidSendRequest,
) -> Option<&'a TemplateRow> {
    let name = &request.template.name;
    match request.template.version {
        Some(version) => templates.1.get(&(name.clone(), version_of(version))),
        None => templates.0.get(name),
    }
}

pub(super) fn version_of(version: u32) -> i32 {
    i32::try_from(version).unwrap_or(i32::MAX)
}
