//! Erasure of a person (`commsctl contacts forget`, `POST /v1/contacts/forget`): every place the
//! fleet keeps their personal data is emptied in one transaction, and what the law requires is
//! kept.
//!
//! Order matters. The suppression hashes are written first, from the consent states the contact's
//! channels hold *before* they are deleted, so an opted-out address is never, even for a moment,
//! sendable again. Messages still waiting to go out are cancelled (with an appended `cancelled`
//! event: the log is only ever appended to) before their content is removed. The audit row names
//! who erased, when and why, and counts per table — never the contact, address or hash. The
//! statements on message rows (the cancellation with its events, emptying the content) are the
//! ledger's ([`crate::messages::ledger`]); this module decides whose and when.
//!
//! Dead letters are part of "everywhere". A refused request holding the address may still wait in
//! the `comms.dead` queue — the runtime's copy of a row already in `internal.rejected_input`, or a
//! dead letter the broker made itself, which has no row until it is collected. The queue cannot
//! be searched in place, so [`forget`] first collects all of it into `internal.rejected_input`
//! (as `commsctl dead` does; nothing is lost, every dead letter stays listed there), until the
//! broker reports it empty, and only then erases the rows — the collected ones with the rest. If
//! the queue cannot be read, nothing is erased and the caller is told to retry: an erasure that
//! reports success has reached the queue too.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{REMOVED, address_hash, normalise};
use crate::dead::{self, DeadError};
use crate::messages::ledger;
use comms_runtime::amqp::Publisher;
use comms_runtime::topology::Topology;

/// Whom to erase: everything held for an address, or for one contact (all its addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Phone(String),
    Email(String),
    Contact(Uuid),
}

/// An erasure as asked: whom, why, by whom.
#[derive(Debug, Clone)]
pub struct ForgetRequest {
    pub subject: Subject,
    pub reason: String,
    pub by: String,
}

/// What an erasure did: its audit id and rows changed per table (counts only).
#[derive(Debug, Clone, Serialize)]
pub struct Erasure {
    pub id: i64,
    pub counts: BTreeMap<&'static str, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("--reason is required: say why the data is erased (the request, the ticket)")]
    NoReason,
    #[error("--by is required: name the person erasing")]
    NoActor,
    #[error("no contact {0}")]
    UnknownContact(Uuid),
    /// The phone or email named is not one: nothing is looked for, nothing is erased (a typo must
    /// not erase a stranger's data that happens to contain it, nor confirm an erasure).
    #[error(
        "{field}: {problem}; nothing was erased (to erase a contact whatever its address looks like, name it with --contact / contact_id)"
    )]
    InvalidAddress {
        field: &'static str,
        problem: String,
    },
    #[error(
        "the dead-letter queue could not be collected, so nothing was erased ({0}); run it again when RabbitMQ is reachable"
    )]
    DeadQueue(#[from] DeadError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Erases `request.subject` everywhere, the dead-letter queue included (through `publisher`'s
/// channel, under `topology`); returns the audit record. Running it again for the same person
/// changes nothing more and records a second erasure with zero counts.
pub async fn forget(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
    hash_key: &[u8],
    request: &ForgetRequest,
) -> Result<Erasure, EraseError> {
    if request.reason.trim().is_empty() {
        return Err(EraseError::NoReason);
    }
    if request.by.trim().is_empty() {
        return Err(EraseError::NoActor);
    }
    let subject = checked(&request.subject)?;
    let request = &ForgetRequest {
        subject,
        ..request.clone()
    };
    let collected = collect_dead_queue(pool, publisher, topology).await?;
    let mut counts = BTreeMap::new();
    counts.insert("dead_letters_collected", collected);
    erase_rows(pool, hash_key, request, counts).await
}

/// The subject with its address checked as a send request's recipient is, in that form (E.164, the
/// email's domain lower-cased): the form messages were recorded with.
fn checked(subject: &Subject) -> Result<Subject, EraseError> {
    let invalid = |field| move |problem| EraseError::InvalidAddress { field, problem };
    Ok(match subject {
        Subject::Phone(raw) => {
            Subject::Phone(crate::contract::phone_number(raw.trim()).map_err(invalid("phone"))?)
        }
        Subject::Email(raw) => {
            Subject::Email(crate::contract::email_address(raw.trim()).map_err(invalid("email"))?)
        }
        Subject::Contact(id) => Subject::Contact(*id),
    })
}

/// Moves everything waiting in `comms.dead` into `internal.rejected_input`, until the broker has
/// none left; returns how many messages it took.
async fn collect_dead_queue(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
) -> Result<u64, DeadError> {
    let mut taken = 0;
    loop {
        let round = dead::collect(pool, publisher, topology, dead::COLLECT_MAX).await?;
        taken += u64::try_from(round.taken).unwrap_or(u64::MAX);
        if round.taken < dead::COLLECT_MAX {
            return Ok(taken);
        }
    }
}

/// Everything [`forget`] does in the database, in one transaction.
async fn erase_rows(
    pool: &PgPool,
    hash_key: &[u8],
    request: &ForgetRequest,
    mut counts: BTreeMap<&'static str, u64>,
) -> Result<Erasure, EraseError> {
    let mut tx = pool.begin().await?;
    let (contacts, mut addresses) = resolve(&mut tx, &request.subject).await?;

    // What each channel's consent was, before anything changes.
    let channels: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT channel, address, consent_state FROM comms.contact_channels
         WHERE contact_id = ANY($1) FOR UPDATE",
    )
    .bind(&contacts)
    .fetch_all(&mut *tx)
    .await?;
    let mut kept = 0;
    for (channel, address, state) in &channels {
        addresses.push(address.clone());
        let hash = address_hash(hash_key, channel, address);
        if matches!(state.as_str(), "opted_out" | "suppressed") {
            sqlx::query(
                "INSERT INTO comms.erased_suppressions (channel, address_hash, consent_state)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (channel, address_hash) DO UPDATE SET consent_state = EXCLUDED.consent_state",
            )
            .bind(channel)
            .bind(&hash)
            .bind(state)
            .execute(&mut *tx)
            .await?;
            kept += 1;
        } else {
            // The person's latest word was that they may be contacted: an older suppression of
            // this address (from an earlier erasure) no longer speaks for them.
            sqlx::query(
                "DELETE FROM comms.erased_suppressions WHERE channel = $1 AND address_hash = $2",
            )
            .bind(channel)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        }
    }
    counts.insert("suppressions_kept", kept);
    addresses.sort();
    addresses.dedup();

    // A message that has not gone out is cancelled rather than left unsendable.
    let cancelled = ledger::moves::cancel_erased(&mut *tx, &contacts).await?;
    counts.insert("messages_cancelled", cancelled);

    let messages: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM comms.messages WHERE contact_id = ANY($1)")
            .bind(&contacts)
            .fetch_all(&mut *tx)
            .await?;
    let emptied = ledger::content::erase(&mut *tx, &messages, REMOVED).await?;
    counts.insert("messages", emptied);

    let portal = sqlx::query(
        "DELETE FROM comms.portal_updates WHERE contact_id = ANY($1) OR message_id = ANY($2)",
    )
    .bind(&contacts)
    .bind(&messages)
    .execute(&mut *tx)
    .await?;
    counts.insert("portal_updates", portal.rows_affected());

    let inbound = sqlx::query(
        "UPDATE internal.inbound_messages SET from_address = $4, subject = NULL, body = '',
             content_removed_at = COALESCE(content_removed_at, now())
         WHERE (contact_id = ANY($1) OR message_id = ANY($2) OR from_address = ANY($3))
           AND (from_address <> $4 OR body <> '' OR subject IS NOT NULL)",
    )
    .bind(&contacts)
    .bind(&messages)
    .bind(&addresses)
    .bind(REMOVED)
    .execute(&mut *tx)
    .await?;
    counts.insert("inbound_messages", inbound.rows_affected());

    let patterns = byte_patterns(&addresses);
    let payloads = sqlx::query(
        "DELETE FROM internal.provider_payloads p
         WHERE p.message_id = ANY($1)
            OR EXISTS (SELECT 1 FROM unnest($2::bytea[]) a(b) WHERE position(a.b IN p.payload) > 0)",
    )
    .bind(&messages)
    .bind(&patterns)
    .execute(&mut *tx)
    .await?;
    counts.insert("provider_payloads", payloads.rows_affected());

    let rejected = sqlx::query(
        "DELETE FROM internal.rejected_input r
         WHERE EXISTS (SELECT 1 FROM unnest($1::bytea[]) a(b)
                        WHERE position(a.b IN r.payload) > 0
                           OR position(a.b IN convert_to(r.headers::text, 'UTF8')) > 0)",
    )
    .bind(&patterns)
    .execute(&mut *tx)
    .await?;
    counts.insert("rejected_input", rejected.rows_affected());

    let batched = sqlx::query(
        "UPDATE comms.digest_batch_events SET payload = '{}'::jsonb
         WHERE batch_id IN (SELECT id FROM comms.digest_batches WHERE contact_id = ANY($1))
           AND payload <> '{}'::jsonb",
    )
    .bind(&contacts)
    .execute(&mut *tx)
    .await?;
    counts.insert("digest_batch_events", batched.rows_affected());

    let deleted = sqlx::query("DELETE FROM comms.contact_channels WHERE contact_id = ANY($1)")
        .bind(&contacts)
        .execute(&mut *tx)
        .await?;
    counts.insert("contact_addresses", deleted.rows_affected());
    let named = sqlx::query(
        "UPDATE comms.contacts SET name = NULL, time_zone = NULL, erased_at = now()
         WHERE id = ANY($1)",
    )
    .bind(&contacts)
    .execute(&mut *tx)
    .await?;
    counts.insert("contacts", named.rows_affected());

    let id: i64 = sqlx::query_scalar(
        "INSERT INTO comms.erasures (erased_by, reason, counts) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(request.by.trim())
    .bind(request.reason.trim())
    .bind(serde_json::to_value(&counts).unwrap_or_default())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Erasure { id, counts })
}

/// The contacts the subject names and the addresses to look for in raw material.
async fn resolve(
    tx: &mut Transaction<'_, Postgres>,
    subject: &Subject,
) -> Result<(Vec<Uuid>, Vec<String>), EraseError> {
    let (channel, address) = match subject {
        Subject::Contact(id) => {
            let found: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM comms.contacts WHERE id = $1 FOR UPDATE")
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
            let id = found.ok_or(EraseError::UnknownContact(*id))?;
            let used: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT recipient_address FROM comms.messages
                 WHERE contact_id = $1 AND recipient_address <> $2",
            )
            .bind(id)
            .bind(REMOVED)
            .fetch_all(&mut **tx)
            .await?;
            return Ok((vec![id], used));
        }
        Subject::Phone(phone) => ("sms", normalise(phone)),
        Subject::Email(email) => ("email", normalise(email)),
    };
    // The contact holding the address (every message to it is recorded for that contact, the
    // sender resolves addresses through this table) and any contact a reply from it was matched to.
    let contacts: Vec<Uuid> = sqlx::query_scalar(
        "SELECT contact_id FROM comms.contact_channels WHERE channel = $1 AND lower(address) = lower($2)
         UNION SELECT contact_id FROM internal.inbound_messages
               WHERE from_address = $2 AND contact_id IS NOT NULL",
    )
    .bind(channel)
    .bind(&address)
    .fetch_all(&mut **tx)
    .await?;
    Ok((contacts, vec![address]))
}

/// Each address as raw material may hold it: as written, and form-urlencoded (Twilio's webhooks
/// carry `From=%2B14155552671`).
fn byte_patterns(addresses: &[String]) -> Vec<Vec<u8>> {
    let mut patterns: Vec<Vec<u8>> = Vec::new();
    for address in addresses.iter().filter(|a| a.len() >= 5 && *a != REMOVED) {
        patterns.push(address.as_bytes().to_vec());
        let encoded: String = form_urlencoded::byte_serialize(address.as_bytes()).collect();
        patterns.push(encoded.into_bytes());
    }
    patterns.sort();
    patterns.dedup();
    patterns
}
