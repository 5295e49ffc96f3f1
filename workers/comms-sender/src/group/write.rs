//! The two writes of a group of new messages: record-and-claim before the provider calls, and
//! the `sent` outcomes after them — one statement (one commit) each for the whole group.
//!
//! Both keep the single-message guarantees: a message is created only if its idempotency key is
//! new (a known key is left to the one-message path), it moves to `sent` only from `sending`, and
//! every state change has its event in the same statement.

use comms_domain::contract::ValidSendRequest;
use sqlx::PgPool;
use uuid::Uuid;

use crate::render::Rendered;
use crate::store::{ACTOR, Message};

/// A new message ready to be recorded and claimed.
pub struct NewMessage<'a> {
    pub request: &'a ValidSendRequest,
    pub contact_id: Uuid,
    pub address: String,
    pub client_id: Option<Uuid>,
    pub rendered: Rendered,
    /// The provider account it will go through (for the `dispatching` event).
    pub account: String,
    /// The span of this member's send, and its context as stored on the message.
    pub span: tracing::Span,
    pub traceparent: Option<String>,
}

const DISPATCH_RECOVERY: &str = "if the outcome is never recorded, the message is failed as dispatch_outcome_unknown for the owner to check";

/// Records each message already claimed for dispatch (`sending`, attempt 1, rendered content
/// stored) with its `received` and `dispatching` events. Rows are inserted in key order, so two
/// groups holding the same keys wait on each other in one order only (never a deadlock). Returns the messages it created; a
/// message whose idempotency key already exists is not among them.
pub async fn record_and_claim(
    pool: &PgPool,
    messages: &[NewMessage<'_>],
) -> Result<Vec<Message>, sqlx::Error> {
    let mut columns = Columns::default();
    for message in messages {
        columns.push(message);
    }
    sqlx::query_as(
        "WITH input AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[],
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[], $11::text[],
                 $12::int[], $13::bool[], $14::bool[], $15::timestamptz[], $16::jsonb[],
                 $17::text[], $18::text[], $19::text[], $20::int[], $21::uuid[], $22::text[],
                 $25::text[])
             WITH ORDINALITY AS u(idempotency_key, channel, kind, contact_id, recipient_address,
                 owner, source, trigger, record_type, record_id, template_name, template_version,
                 contains_roi, ai_draft, send_after, request, subject, body, sms_encoding,
                 sms_segments, client_id, account, traceparent, ord)),
         m AS (
             INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id,
                 recipient_address, owner, source, trigger, record_type, record_id, template_name,
                 template_version, contains_roi, ai_draft, send_after, request, subject, body,
                 sms_encoding, sms_segments, client_id, traceparent, delivery_state,
                 attempt_count)
             SELECT idempotency_key, channel, kind, contact_id, recipient_address, owner, source,
                 trigger, record_type, record_id, template_name, template_version, contains_roi,
                 ai_draft, send_after, request, subject, body, sms_encoding, sms_segments,
                 client_id, traceparent, 'sending', 1
             FROM input ORDER BY idempotency_key
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING id, idempotency_key, channel, kind, contact_id, recipient_address,
                 delivery_state, send_after, held_by_pause, created_at, updated_at, owner, source,
                 trigger),
         e AS (
             INSERT INTO comms.message_events
                 (message_id, event_type, actor, source, owner, reason, recovery_rule, detail)
             SELECT m.id, ev.event_type, $23, m.source, m.owner, ev.reason, ev.recovery_rule,
                 ev.detail
             FROM m JOIN input i ON i.idempotency_key = m.idempotency_key
             CROSS JOIN LATERAL (VALUES
                 (1, 'received', 'request accepted and recorded', NULL::text,
                     jsonb_build_object('trigger', m.trigger, 'kind', m.kind)),
                 (2, 'dispatching', 'dispatching through ' || i.account, $24::text, '{}'::jsonb)
             ) AS ev(step, event_type, reason, recovery_rule, detail)
             ORDER BY i.ord, ev.step)
         SELECT id, idempotency_key, channel, kind, contact_id, recipient_address,
             delivery_state, send_after, held_by_pause, created_at, updated_at
         FROM m",
    )
    .bind(&columns.idempotency_key)
    .bind(&columns.channel)
    .bind(&columns.kind)
    .bind(&columns.contact_id)
    .bind(&columns.recipient_address)
    .bind(&columns.owner)
    .bind(&columns.source)
    .bind(&columns.trigger)
    .bind(&columns.record_type)
    .bind(&columns.record_id)
    .bind(&columns.template_name)
    .bind(&columns.template_version)
    .bind(&columns.contains_roi)
    .bind(&columns.ai_draft)
    .bind(&columns.send_after)
    .bind(&columns.request)
    .bind(&columns.subject)
    .bind(&columns.body)
    .bind(&columns.sms_encoding)
    .bind(&columns.sms_segments)
    .bind(&columns.client_id)
    .bind(&columns.account)
    .bind(ACTOR)
    .bind(DISPATCH_RECOVERY)
    .bind(&columns.traceparent)
    .fetch_all(pool)
    .await
}

/// One provider acceptance to record.
pub struct Accepted {
    pub message_id: Uuid,
    pub provider: &'static str,
    pub provider_message_id: String,
    pub attempt: i32,
}

/// Moves each accepted message from `sending` to `sent` with the provider's id and its `sent`
/// event. Returns how many moved (a message no longer `sending` is left as it is). The rows are
/// given in id order — the order the status worker locks them in — so the two wait for each
/// other rather than deadlock over a callback that arrives while its message is being recorded
/// (should PostgreSQL still pick another order and detect a deadlock, each side falls back to
/// recording its messages one by one).
pub async fn record_sent(pool: &PgPool, accepted: &[Accepted]) -> Result<u64, sqlx::Error> {
    let mut accepted: Vec<&Accepted> = accepted.iter().collect();
    accepted.sort_by_key(|a| a.message_id);
    let ids: Vec<Uuid> = accepted.iter().map(|a| a.message_id).collect();
    let providers: Vec<&str> = accepted.iter().map(|a| a.provider).collect();
    let provider_ids: Vec<&str> = accepted
        .iter()
        .map(|a| a.provider_message_id.as_str())
        .collect();
    let attempts: Vec<i32> = accepted.iter().map(|a| a.attempt).collect();
    let result = sqlx::query(
        "WITH u AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[])
                 WITH ORDINALITY AS u(id, provider, provider_message_id, attempt, ord)),
         moved AS (
             UPDATE comms.messages m SET delivery_state = 'sent', next_action = NULL,
                 provider = u.provider, provider_message_id = u.provider_message_id,
                 dispatched_at = now(), updated_at = now()
             FROM u WHERE m.id = u.id AND m.delivery_state = 'sending'
             RETURNING m.id, m.source, m.owner, u.provider, u.provider_message_id, u.attempt, u.ord)
         INSERT INTO comms.message_events (message_id, event_type, actor, source, owner, reason, detail)
         SELECT id, 'sent', $5, source, owner, 'accepted by ' || provider,
             jsonb_build_object('provider_message_id', provider_message_id, 'attempt', attempt)
         FROM moved ORDER BY ord",
    )
    .bind(&ids)
    .bind(&providers)
    .bind(&provider_ids)
    .bind(&attempts)
    .bind(ACTOR)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// The group's values, one array per column (how `unnest` takes them).
#[derive(Default)]
struct Columns<'a> {
    idempotency_key: Vec<&'a str>,
    channel: Vec<&'static str>,
    kind: Vec<&'static str>,
    contact_id: Vec<Uuid>,
    recipient_address: Vec<&'a str>,
    owner: Vec<&'a str>,
    source: Vec<&'a str>,
    trigger: Vec<&'a str>,
    record_type: Vec<&'static str>,
    record_id: Vec<Uuid>,
    template_name: Vec<&'a str>,
    template_version: Vec<i32>,
    contains_roi: Vec<bool>,
    ai_draft: Vec<bool>,
    send_after: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    request: Vec<serde_json::Value>,
    subject: Vec<Option<&'a str>>,
    body: Vec<&'a str>,
    sms_encoding: Vec<Option<&'static str>>,
    sms_segments: Vec<Option<i32>>,
    client_id: Vec<Option<Uuid>>,
    account: Vec<&'a str>,
    traceparent: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, message: &'a NewMessage<'a>) {
        let request = message.request;
        self.idempotency_key.push(&request.idempotency_key);
        self.channel.push(request.channel.as_str());
        self.kind.push(request.kind.as_str());
        self.contact_id.push(message.contact_id);
        self.recipient_address.push(&message.address);
        self.owner.push(&request.owner);
        self.source.push(&request.source);
        self.trigger.push(&request.trigger);
        self.record_type.push(request.record.record_type.as_str());
        self.record_id.push(request.record.id);
        self.template_name.push(&request.template.name);
        self.template_version
            .push(message.rendered.template_version);
        self.contains_roi.push(request.contains_roi);
        self.ai_draft.push(request.ai_draft);
        self.send_after.push(request.send_after);
        self.request.push(request.to_stored_json());
        self.subject.push(message.rendered.subject.as_deref());
        self.body.push(&message.rendered.body);
        self.sms_encoding
            .push(message.rendered.sms.map(|s| s.encoding.as_str()));
        self.sms_segments.push(
            message
                .rendered
                .sms
                .map(|s| i32::try_from(s.segments).unwrap_or(i32::MAX)),
        );
        self.client_id.push(message.client_id);
        self.account.push(&message.account);
        self.traceparent.push(message.traceparent.as_deref());
    }
}
