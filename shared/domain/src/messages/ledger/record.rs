//! Recording a new message: the insert with its `received` event (one message, the sender's
//! one-message path), the group insert that records and claims many at once (the sender's group
//! path), and the rendered content stored on a recorded message.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::contract::ValidSendRequest;

/// A recorded message as the sender needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recorded {
    pub id: Uuid,
    pub idempotency_key: String,
    pub channel: String,
    pub kind: String,
    pub contact_id: Uuid,
    pub recipient_address: String,
    pub delivery_state: String,
    pub send_after: Option<DateTime<Utc>>,
    pub held_by_pause: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The claim holding the message in `sending` (none outside `sending`, or for a claim made
    /// before claims had ids: [`super::calls`]).
    pub dispatch_claim: Option<Uuid>,
    /// When the provider call of the current (or last) claim started; none in `sending` means
    /// it never started.
    pub call_started_at: Option<DateTime<Utc>>,
}

/// The columns of [`Recorded`], for a read of it.
pub const RECORDED_COLUMNS: &str = "id, idempotency_key, channel, kind, contact_id, recipient_address, delivery_state, send_after, held_by_pause, created_at, updated_at, dispatch_claim, call_started_at";

/// A request to record, addressed to a known contact.
pub struct NewMessage<'a> {
    pub request: &'a ValidSendRequest,
    pub contact_id: Uuid,
    pub address: &'a str,
    /// The canonical request as stored.
    pub wire: &'a serde_json::Value,
    pub actor: &'a str,
    /// The recording span's context, so later workers continue its trace.
    pub traceparent: Option<String>,
}

/// Records `new` as `received` with its `received` event, unless its idempotency key exists.
/// Returns the new message, or `None` when the key was already recorded.
///
/// The insert and its event are one statement (a data-modifying CTE), so they commit together
/// without a transaction round trip.
pub async fn record_received(
    pool: &PgPool,
    new: &NewMessage<'_>,
) -> Result<Option<Recorded>, sqlx::Error> {
    let request = new.request;
    let detail = json!({ "trigger": request.trigger, "kind": request.kind.as_str() });
    sqlx::query_as(&format!(
        "WITH m AS (
             INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address,
                 owner, source, trigger, record_type, record_id, template_name, template_version,
                 contains_roi, ai_draft, send_after, request, traceparent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $19)
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING {RECORDED_COLUMNS}),
         e AS (
             INSERT INTO comms.message_events (message_id, event_type, actor, source, owner, reason, detail)
             SELECT id, 'received', $17, $7, $6, 'request accepted and recorded', $18 FROM m)
         SELECT * FROM m"
    ))
    .bind(&request.idempotency_key)
    .bind(request.channel.as_str())
    .bind(request.kind.as_str())
    .bind(new.contact_id)
    .bind(new.address)
    .bind(&request.owner)
    .bind(&request.source)
    .bind(&request.trigger)
    .bind(request.record.record_type.as_str())
    .bind(request.record.id)
    .bind(&request.template.name)
    .bind(
        request
            .template
            .version
            .map(|v| i32::try_from(v).unwrap_or(i32::MAX)),
    )
    .bind(request.contains_roi)
    .bind(request.ai_draft)
    .bind(request.send_after)
    .bind(new.wire)
    .bind(new.actor)
    .bind(&detail)
    .bind(&new.traceparent)
    .fetch_optional(pool)
    .await
}

/// What a message will say, as rendered.
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    pub template_version: i32,
    pub subject: Option<&'a str>,
    pub body: &'a str,
    pub sms_encoding: Option<&'static str>,
    pub sms_segments: Option<i32>,
}

/// Stores the rendered content (and the record's client) on message `id`, so approvers and the
/// timeline see what goes out.
pub async fn save_content<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
    content: Content<'_>,
    client_id: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE comms.messages SET subject = $2, body = $3, template_version = $4,
             sms_encoding = $5, sms_segments = $6, client_id = $7, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(content.subject)
    .bind(content.body)
    .bind(content.template_version)
    .bind(content.sms_encoding)
    .bind(content.sms_segments)
    .bind(client_id)
    .execute(db)
    .await?;
    Ok(())
}

/// A new message of a group, ready to be recorded and claimed.
pub struct Claimed<'a> {
    pub request: &'a ValidSendRequest,
    pub contact_id: Uuid,
    pub address: &'a str,
    pub client_id: Option<Uuid>,
    pub content: Content<'a>,
    /// The provider account it will go through (for the `dispatching` event).
    pub account: &'a str,
    pub traceparent: Option<&'a str>,
}

/// Records each message already claimed for dispatch (`sending`, attempt 1, rendered content
/// stored, held by `claim`, its provider call marked as started) with its `received` and
/// `dispatching` events (the latter with `recovery`). The claim is also the calls' mark: the
/// caller makes the calls right after this returns, with nothing awaited in between, as the
/// one-message path does after its own claim ([`super::calls`]).
///
/// The statement runs in a transaction that only this process's `COMMIT` ends: PostgreSQL
/// finishes a statement whose client died, and a statement of its own would then commit a claim whose calls never came. A process that dies
/// before its commit recorded nothing (its requests come back and are recorded anew). Rows are
/// inserted in key order, so two groups holding the same keys wait on each other in one order
/// only (never a deadlock). Returns the messages it created; a message whose idempotency key
/// already exists is not among them.
pub async fn record_and_claim(
    pool: &PgPool,
    messages: &[Claimed<'_>],
    claim: Uuid,
    actor: &str,
    recovery: &str,
) -> Result<Vec<Recorded>, sqlx::Error> {
    let mut columns = Columns::default();
    for message in messages {
        columns.push(message);
    }
    let mut claiming = pool.begin().await?;
    let recorded = sqlx::query_as(
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
                 attempt_count, dispatch_claim, call_started_at)
             SELECT idempotency_key, channel, kind, contact_id, recipient_address, owner, source,
                 trigger, record_type, record_id, template_name, template_version, contains_roi,
                 ai_draft, send_after, request, subject, body, sms_encoding, sms_segments,
                 client_id, traceparent, 'sending', 1, $26, now()
             FROM input ORDER BY idempotency_key
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING id, idempotency_key, channel, kind, contact_id, recipient_address,
                 delivery_state, send_after, held_by_pause, created_at, updated_at, dispatch_claim,
                 call_started_at, owner, source, trigger),
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
             delivery_state, send_after, held_by_pause, created_at, updated_at, dispatch_claim,
             call_started_at
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
    .bind(actor)
    .bind(recovery)
    .bind(&columns.traceparent)
    .bind(claim)
    .fetch_all(&mut *claiming)
    .await?;
    claiming.commit().await?;
    Ok(recorded)
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
    send_after: Vec<Option<DateTime<Utc>>>,
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
    fn push(&mut self, message: &Claimed<'a>) {
        let request = message.request;
        self.idempotency_key.push(&request.idempotency_key);
        self.channel.push(request.channel.as_str());
        self.kind.push(request.kind.as_str());
        self.contact_id.push(message.contact_id);
        self.recipient_address.push(message.address);
        self.owner.push(&request.owner);
        self.source.push(&request.source);
        self.trigger.push(&request.trigger);
        self.record_type.push(request.record.record_type.as_str());
        self.record_id.push(request.record.id);
        self.template_name.push(&request.template.name);
        self.template_version.push(message.content.template_version);
        self.contains_roi.push(request.contains_roi);
        self.ai_draft.push(request.ai_draft);
        self.send_after.push(request.send_after);
        self.request.push(request.to_stored_json());
        self.subject.push(message.content.subject);
        self.body.push(message.content.body);
        self.sms_encoding.push(message.content.sms_encoding);
        self.sms_segments.push(message.content.sms_segments);
        self.client_id.push(message.client_id);
        self.account.push(message.account);
        self.traceparent.push(message.traceparent);
    }
}
