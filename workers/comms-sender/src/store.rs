//! The sender's side of a message's life: finding or creating the recipient contact, and the
//! sender's calls into the ledger (`comms_domain::messages::ledger`), which writes every state
//! change with its event and owner task.
//!
//! Every state change is one statement that moves the message only from the states it may
//! leave, appends its event and, where a person must act, opens an owner task. Because the move
//! is conditional, two deliveries of the same message can never both make it: the loser sees
//! "no row changed" and stops.

use comms_domain::contract::{Channel, ValidSendRequest};
use comms_domain::messages::DeliveryState;
use comms_domain::messages::ledger::{self, record::RECORDED_COLUMNS};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

pub const ACTOR: &str = "comms-sender";

/// What happens to a claimed message whose outcome is never recorded (the recovery rule of
/// every `dispatching` event, on both paths).
pub const DISPATCH_RECOVERY: &str = "if its provider call never started, it is sent again; if the call started and its outcome is never recorded, the message is failed as dispatch_outcome_unknown for the owner to check";

/// States from which a message may still be dispatched.
pub const DISPATCHABLE: &[DeliveryState] = DeliveryState::DISPATCHABLE;

/// One message as the sender needs it.
pub use comms_domain::messages::ledger::record::Recorded as Message;

pub use comms_domain::messages::ledger::{Event, Task, Transition};

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
/// The insert and its `received` event are one statement
/// ([`ledger::record::record_received`]); a conflicting key means the message exists.
pub async fn record(
    pool: &PgPool,
    request: &ValidSendRequest,
    hash_key: &SecretString,
) -> Result<(Message, bool), RecordError> {
    let (contact_id, address) = resolve_contact(pool, request, hash_key).await?;
    let wire = request.to_stored_json();
    let new = ledger::record::NewMessage {
        request,
        contact_id,
        address: &address,
        wire: &wire,
        actor: ACTOR,
        // The handling span's context, so the status and reply workers continue this trace.
        traceparent: comms_runtime::trace_context::current_traceparent(),
    };
    let inserted = ledger::record::record_received(pool, &new).await?;
    if let Some(message) = inserted {
        return Ok((message, true));
    }
    let existing: Message = sqlx::query_as(&format!(
        "SELECT {RECORDED_COLUMNS} FROM comms.messages WHERE idempotency_key = $1"
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
        && let Some(found) = resolve_portal_recipient(pool, request).await?
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

/// Applies `transition` if the message is still in one of its `from` states. Returns the new
/// attempt count, or `None` when the message had already moved on (another delivery won).
///
/// The state change, its event and its owner task are one statement ([`ledger::transition`]):
/// they commit together, and the event and task exist only if the move happened.
pub async fn transition(
    pool: &PgPool,
    message: &Message,
    mut transition: Transition<'_>,
) -> Result<Option<i32>, sqlx::Error> {
    // A move out of `sending` is made only while the claim the message was read (or claimed)
    // with still holds it, so a decision on a stale read never moves a later dispatch of it.
    if transition.to != DeliveryState::Sending
        && transition.from.contains(&DeliveryState::Sending)
        && transition.claim.is_none()
    {
        transition.claim = message.dispatch_claim;
    }
    let moved = ledger::transition(pool, message.id, ACTOR, &transition).await?;
    if moved.is_some() {
        comms_domain::messages::metrics::observe_final(
            &message.channel,
            transition.to.as_str(),
            message.created_at,
        );
    }
    Ok(moved)
}

/// Stores the rendered content on the message, so approvers and the timeline see what goes out.
pub async fn save_rendered(
    pool: &PgPool,
    id: Uuid,
    rendered: &crate::render::Rendered,
    client_id: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    ledger::record::save_content(pool, id, rendered.stored(), client_id).await
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

/// Who a portal update is for. A portal update is shown to a contact in the client portal, so —
/// unlike SMS and email — it needs no address of its own: a `contact_id` is enough, and a bare
/// phone number or email address is resolved to the contact that already owns it on its own
/// channel. Only an address no contact owns yet becomes a new contact, as on the other channels.
///
/// The contact (and the address recorded on the message) of a portal update, or `None` when the
/// request names an address no contact owns yet (the caller then creates the contact).
async fn resolve_portal_recipient(
    pool: &PgPool,
    request: &ValidSendRequest,
) -> Result<Option<(Uuid, String)>, RecordError> {
    let recipient = &request.recipient;
    if let Some(contact_id) = recipient.contact_id() {
        let found: Option<Option<String>> = sqlx::query_scalar(
            "SELECT (SELECT address FROM comms.contact_channels
                      WHERE contact_id = c.id AND channel = 'portal')
             FROM comms.contacts c WHERE c.id = $1",
        )
        .bind(contact_id)
        .fetch_optional(pool)
        .await?;
        let portal_address = found.ok_or(RecordError::UnknownContact(contact_id))?;
        // The portal finds its updates by contact; the recorded address only names who it is for.
        let address = portal_address.unwrap_or_else(|| format!("contact:{contact_id}"));
        return Ok(Some((contact_id, address)));
    }
    let (own_channel, address) = match (recipient.phone(), recipient.email()) {
        (Some(phone), _) => ("sms", phone),
        (None, Some(email)) => ("email", email),
        (None, None) => return Ok(None),
    };
    let owner: Option<Uuid> = sqlx::query_scalar(
        "SELECT contact_id FROM comms.contact_channels WHERE channel = $1 AND address = $2",
    )
    .bind(own_channel)
    .bind(address)
    .fetch_optional(pool)
    .await?;
    Ok(owner.map(|contact_id| (contact_id, address.to_string())))
}
