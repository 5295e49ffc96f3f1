//! The sender's reads and writes of messages, events and owner tasks.
//!
//! Every state change is one transaction that moves the message only from the states it may
//! leave, appends its event and, where a person must act, opens an owner task. Because the move
//! is conditional, two deliveries of the same message can never both make it: the loser sees
//! "no row changed" and stops.

use chrono::{DateTime, Utc};
use comms_domain::contract::{Channel, ValidSendRequest};
use comms_domain::messages::DeliveryState;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

pub const ACTOR: &str = "comms-sender";

/// States from which a message may still be dispatched.
pub const DISPATCHABLE: &[&str] = DeliveryState::DISPATCHABLE_NAMES;

/// One message as the sender needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Message {
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
}

const MESSAGE_COLUMNS: &str = "id, idempotency_key, channel, kind, contact_id, recipient_address, delivery_state, send_after, held_by_pause, created_at, updated_at";

/// Why a request could not even be recorded (it names a contact we do not have).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("recipient.contact_id: no contact {0}")]
    UnknownContact(Uuid),
    #[error("recipient.contact_id: contact {0} has no {1} address")]
    NoAddress(Uuid, &'static str),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Records the message of `request`, or finds the one already recorded under its idempotency
/// key. Returns the message and whether this call created it.
///
/// The insert and its `received` event are one statement (a data-modifying CTE), so they commit
/// together without a transaction round trip; a conflicting key means the message exists.
pub async fn record(
    pool: &PgPool,
    request: &ValidSendRequest,
    hash_key: &SecretString,
) -> Result<(Message, bool), RecordError> {
    let (contact_id, address) = resolve_contact(pool, request, hash_key).await?;
    let wire = request.to_stored_json();
    let detail = json!({ "trigger": request.trigger, "kind": request.kind.as_str() });
    let inserted: Option<Message> = sqlx::query_as(&format!(
        "WITH m AS (
             INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address,
                 owner, source, trigger, record_type, record_id, template_name, template_version,
                 contains_roi, ai_draft, send_after, request, traceparent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $19)
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING {MESSAGE_COLUMNS}),
         e AS (
             INSERT INTO comms.message_events (message_id, event_type, actor, source, owner, reason, detail)
             SELECT id, 'received', $17, $7, $6, 'request accepted and recorded', $18 FROM m)
         SELECT * FROM m"
    ))
    .bind(&request.idempotency_key)
    .bind(request.channel.as_str())
    .bind(request.kind.as_str())
    .bind(contact_id)
    .bind(&address)
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
    .bind(&wire)
    .bind(ACTOR)
    .bind(&detail)
    // The handling span's context, so the status and reply workers continue this trace.
    .bind(comms_runtime::trace_context::current_traceparent())
    .fetch_optional(pool)
    .await?;
    if let Some(message) = inserted {
        return Ok((message, true));
    }
    let existing: Message = sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM comms.messages WHERE idempotency_key = $1"
    ))
    .bind(&request.idempotency_key)
    .fetch_one(pool)
    .await?;
    Ok((existing, false))
}

async fn resolve_contact(
    pool: &PgPool,
    request: &ValidSendRequest,
    hash_key: &SecretString,
) -> Result<(Uuid, String), RecordError> {
    let channel = request.channel.as_str();
    let recipient = &request.recipient;
    if request.channel == Channel::Portal
        && let Some(found) = crate::portal_recipient::resolve(pool, request).await?
    {
        return Ok(found);
    }
    if let Some(contact_id) = recipient.contact_id() {
        let found: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT cc.address FROM comms.contacts c
             LEFT JOIN comms.contact_channels cc ON cc.contact_id = c.id AND cc.channel = $2
             WHERE c.id = $1",
        )
        .bind(contact_id)
        .bind(channel)
        .fetch_optional(pool)
        .await?;
        let (address,) = found.ok_or(RecordError::UnknownContact(contact_id))?;
        let address =
            address.ok_or(RecordError::NoAddress(contact_id, request.channel.as_str()))?;
        return Ok((contact_id, address));
    }
    let address = recipient
        .phone()
        .or(recipient.email())
        .unwrap_or_default()
        .to_string();
    let find = || async {
        sqlx::query_scalar::<_, Uuid>(
            "SELECT contact_id FROM comms.contact_channels WHERE channel = $1 AND address = $2",
        )
        .bind(channel)
        .bind(&address)
        .fetch_optional(pool)
        .await
    };
    if let Some(contact_id) = find().await? {
        return Ok((contact_id, address));
    }
    // A new contact and its address in one statement; a concurrent creation of the same address
    // wins the unique key and we use its contact (our contact row then has no address: harmless).
    // An address erased after it had opted out (or was suppressed) comes back in that state, from
    // its keyed hash (docs/privacy.md): erasure forgets the person, not their opt-out.
    let hash =
        comms_domain::privacy::address_hash(hash_key.expose_secret().as_bytes(), channel, &address);
    let created: Option<Uuid> = sqlx::query_scalar(
        "WITH c AS (INSERT INTO comms.contacts (name, time_zone) VALUES ($3, $4) RETURNING id)
         INSERT INTO comms.contact_channels (contact_id, channel, address, consent_state, consent_basis, consent_source, consent_at)
         SELECT c.id, $1, $2, COALESCE(s.consent_state, 'unknown'),
                CASE WHEN s.consent_state IS NULL THEN NULL ELSE 'erasure' END,
                CASE WHEN s.consent_state IS NULL THEN NULL ELSE 'kept through an erasure' END,
                CASE WHEN s.consent_state IS NULL THEN NULL ELSE now() END
         FROM c LEFT JOIN comms.erased_suppressions s ON s.channel = $1 AND s.address_hash = $5
         ON CONFLICT (channel, address) DO NOTHING
         RETURNING contact_id",
    )
    .bind(channel)
    .bind(&address)
    .bind(recipient.name())
    .bind(recipient.time_zone().map(|tz| tz.name().to_string()))
    .bind(&hash)
    .fetch_optional(pool)
    .await?;
    match created {
        Some(contact_id) => Ok((contact_id, address)),
        None => {
            let contact_id = find().await?.ok_or(sqlx::Error::RowNotFound)?;
            Ok((contact_id, address))
        }
    }
}

/// One entry of the message's timeline.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_type: &'static str,
    pub reason: String,
    pub recovery_rule: Option<String>,
    pub detail: serde_json::Value,
}

impl Event {
    pub fn new(event_type: &'static str, reason: impl Into<String>) -> Self {
        Self {
            event_type,
            reason: reason.into(),
            recovery_rule: None,
            detail: json!({}),
        }
    }
    pub fn recovery(mut self, rule: impl Into<String>) -> Self {
        self.recovery_rule = Some(rule.into());
        self
    }
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// An owner task: a person must act on this message.
#[derive(Debug, Clone)]
pub struct Task {
    pub title: String,
    pub next_action: String,
    pub due_in: chrono::Duration,
}

/// A move of a message to a new state, with what changes alongside it.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub from: &'a [&'a str],
    pub to: &'static str,
    pub failure_reason: Option<String>,
    pub next_action: Option<String>,
    pub send_after: Option<DateTime<Utc>>,
    pub held_by_pause: Option<Uuid>,
    pub provider: Option<&'static str>,
    pub provider_message_id: Option<String>,
    /// Added to the attempt count: 1 for a claim, -1 to undo one that never reached a provider.
    pub attempt_delta: i32,
    pub event: Event,
    pub task: Option<Task>,
}

impl<'a> Transition<'a> {
    pub fn new(from: &'a [&'a str], to: &'static str, event: Event) -> Self {
        Self {
            from,
            to,
            failure_reason: None,
            next_action: None,
            send_after: None,
            held_by_pause: None,
            provider: None,
            provider_message_id: None,
            attempt_delta: 0,
            event,
            task: None,
        }
    }
}

/// Applies `transition` if the message is still in one of its `from` states. Returns the new
/// attempt count, or `None` when the message had already moved on (another delivery won).
///
/// The state change, its event and its owner task are one statement: they commit together, and
/// the event and task exist only if the move happened.
pub async fn transition(
    pool: &PgPool,
    message: &Message,
    transition: Transition<'_>,
) -> Result<Option<i32>, sqlx::Error> {
    let from: Vec<String> = transition.from.iter().map(|s| (*s).to_string()).collect();
    let event = &transition.event;
    let task = transition.task.as_ref();
    sqlx::query_scalar(
        "WITH moved AS (
             UPDATE comms.messages SET
                 delivery_state = $2,
                 failure_reason = COALESCE($3, failure_reason),
                 next_action = $4,
                 send_after = COALESCE($5, send_after),
                 held_by_pause = COALESCE($6, held_by_pause),
                 provider = COALESCE($7, provider),
                 provider_message_id = COALESCE($8, provider_message_id),
                 attempt_count = attempt_count + $9,
                 dispatched_at = CASE WHEN $2 = 'sent' THEN now() ELSE dispatched_at END,
                 opt_out_state = CASE WHEN $3 IN ('opted_out', 'suppressed') THEN $3 ELSE opt_out_state END,
                 updated_at = now()
             WHERE id = $1 AND delivery_state = ANY($10)
             RETURNING id, attempt_count, source, owner, record_type, record_id),
         event AS (
             INSERT INTO comms.message_events
                 (message_id, event_type, actor, source, owner, reason, recovery_rule, detail)
             SELECT id, $11, $12, source, owner, $13, $14, $15 FROM moved),
         task AS (
             INSERT INTO comms.tasks (owner, title, next_action, reason, due_at, record_type, record_id, message_id)
             SELECT owner, $16, $17, $13, now() + $18, record_type, record_id, id FROM moved
             WHERE $16::text IS NOT NULL)
         SELECT attempt_count FROM moved",
    )
    .bind(message.id)
    .bind(transition.to)
    .bind(&transition.failure_reason)
    .bind(&transition.next_action)
    .bind(transition.send_after)
    .bind(transition.held_by_pause)
    .bind(transition.provider)
    .bind(&transition.provider_message_id)
    .bind(transition.attempt_delta)
    .bind(&from)
    .bind(event.event_type)
    .bind(ACTOR)
    .bind(&event.reason)
    .bind(&event.recovery_rule)
    .bind(&event.detail)
    .bind(task.map(|t| t.title.as_str()))
    .bind(task.map(|t| t.next_action.as_str()))
    .bind(task.map_or(chrono::Duration::zero(), |t| t.due_in))
    .fetch_optional(pool)
    .await
    .inspect(|moved| {
        if moved.is_some() {
            comms_domain::messages::metrics::observe_final(&message.channel, transition.to, message.created_at);
        }
    })
}

/// Stores the rendered content on the message, so approvers and the timeline see what goes out.
pub async fn save_rendered(
    pool: &PgPool,
    id: Uuid,
    rendered: &crate::render::Rendered,
    client_id: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE comms.messages SET subject = $2, body = $3, template_version = $4,
             sms_encoding = $5, sms_segments = $6, client_id = $7, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(&rendered.subject)
    .bind(&rendered.body)
    .bind(rendered.template_version)
    .bind(rendered.sms.map(|s| s.encoding.as_str()))
    .bind(
        rendered
            .sms
            .map(|s| i32::try_from(s.segments).unwrap_or(i32::MAX)),
    )
    .bind(client_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks the contact opted out on `channel` (a provider told us the recipient unsubscribed).
pub async fn opt_out_contact(
    pool: &PgPool,
    contact_id: Uuid,
    channel: Channel,
    source: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE comms.contact_channels SET consent_state = 'opted_out', consent_basis = 'provider',
             consent_source = $3, consent_at = now(), updated_at = now()
         WHERE contact_id = $1 AND channel = $2",
    )
    .bind(contact_id)
    .bind(channel.as_str())
    .bind(source)
    .execute(pool)
    .await?;
    Ok(())
}
