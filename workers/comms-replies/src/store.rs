//! The replies worker's reads and writes: matching an inbound message to the outbound one it
//! answers, and recording what it was (reply, auto-reply, opt-out, opt-in, help, unmatched) with
//! its event and, where a person must act, an owner task. The message's reply and opt-out states,
//! its timeline entries and its owner tasks are written through the ledger
//! (`comms_domain::messages::ledger`).

use comms_domain::messages::ledger;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::parse::Inbound;

pub const ACTOR: &str = "comms-replies";

/// The outbound message an inbound one answers.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Matched {
    pub id: Uuid,
    pub contact_id: Uuid,
    pub owner: String,
    pub record_type: String,
    pub record_id: Uuid,
    /// The message's stored trace context, which capturing the reply continues.
    pub traceparent: Option<String>,
}

const MATCHED: &str =
    "SELECT id, contact_id, owner, record_type, record_id, traceparent FROM comms.messages";

/// SMS: the latest outbound message from our number to the sender's number.
pub async fn match_sms(
    pool: &PgPool,
    inbound: &Inbound,
    our_numbers: &[&str],
) -> Result<Option<Matched>, sqlx::Error> {
    if !inbound
        .to
        .iter()
        .any(|to| our_numbers.contains(&to.as_str()))
    {
        return Ok(None);
    }
    sqlx::query_as(&format!(
        "{MATCHED} WHERE channel = 'sms' AND recipient_address = $1 AND dispatched_at IS NOT NULL
         ORDER BY dispatched_at DESC LIMIT 1"
    ))
    .bind(&inbound.from)
    .fetch_optional(pool)
    .await
}

/// Email: the reply token in the address it was sent to (`reply+<id>@…`), else the outbound
/// Message-ID (`<comms.<id>@…>`) in `In-Reply-To` or `References`.
pub async fn match_email(pool: &PgPool, inbound: &Inbound) -> Result<Option<Matched>, sqlx::Error> {
    let from_token = inbound.to.iter().find_map(|to| {
        let local = to.split('@').next()?;
        local.strip_prefix("reply+")?.parse::<Uuid>().ok()
    });
    let from_thread = || {
        inbound
            .headers
            .iter()
            .filter(|(k, _)| {
                k.eq_ignore_ascii_case("in-reply-to") || k.eq_ignore_ascii_case("references")
            })
            .flat_map(|(_, v)| v.split_whitespace())
            .find_map(|id| {
                id.trim_matches(['<', '>'])
                    .strip_prefix("comms.")?
                    .split('@')
                    .next()?
                    .parse::<Uuid>()
                    .ok()
            })
    };
    let Some(id) = from_token.or_else(from_thread) else {
        return Ok(None);
    };
    sqlx::query_as(&format!("{MATCHED} WHERE id = $1 AND channel = 'email'"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The contact behind an address on a channel, if we know it.
pub async fn contact(
    pool: &PgPool,
    channel: &str,
    address: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT contact_id FROM comms.contact_channels WHERE channel = $1 AND address = $2",
    )
    .bind(channel)
    .bind(address)
    .fetch_optional(pool)
    .await
}

/// The record of the contact's latest message (what a help answer or confirmation attaches to).
pub async fn latest_record(
    pool: &PgPool,
    contact_id: Uuid,
) -> Result<Option<(String, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT record_type, record_id FROM comms.messages WHERE contact_id = $1 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(contact_id)
    .fetch_optional(pool)
    .await
}

/// Stores the inbound message; `None` when it was stored before (a redelivery).
pub async fn insert_inbound(
    tx: &mut Transaction<'_, Postgres>,
    inbound: &Inbound,
    classification: &str,
    keyword: Option<&str>,
    matched: Option<&Matched>,
    contact_id: Option<Uuid>,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO internal.inbound_messages (provider, channel, provider_message_id, from_address,
             to_address, subject, body, classification, keyword, message_id, contact_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (provider, provider_message_id) DO NOTHING
         RETURNING id",
    )
    .bind(inbound.provider)
    .bind(inbound.channel)
    .bind(&inbound.provider_message_id)
    .bind(&inbound.from)
    .bind(inbound.to.join(", "))
    .bind(&inbound.subject)
    .bind(&inbound.body)
    .bind(classification)
    .bind(keyword)
    .bind(matched.map(|m| m.id))
    .bind(contact_id)
    .fetch_optional(&mut **tx)
    .await
}

/// Appends an event to a message's timeline (or a contact-level event when there is no message).
pub async fn event(
    tx: &mut Transaction<'_, Postgres>,
    message: Option<&Matched>,
    event_type: &str,
    source: &str,
    reason: &str,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    ledger::append_event(
        &mut **tx,
        ledger::Entry {
            message_id: message.map(|m| m.id),
            event_type,
            actor: ACTOR,
            source,
            owner: message.map(|m| m.owner.as_str()),
            reason,
            recovery_rule: Some(recovery_rule(event_type)),
            detail: &detail,
        },
    )
    .await?;
    Ok(())
}

fn recovery_rule(event_type: &str) -> &'static str {
    match event_type {
        "opted_out" => {
            "never sent to on this channel until the contact opts back in (START, YES, UNSTOP)"
        }
        "opted_in" => "sends allowed again on this channel",
        "reply_received" => "the owner answers; marking the task done records the response time",
        _ => "recorded for the timeline",
    }
}

/// An owner task about an inbound message.
pub struct NewTask<'a> {
    pub owner: &'a str,
    pub title: &'a str,
    pub next_action: &'a str,
    pub reason: &'a str,
    pub due: std::time::Duration,
}

pub async fn task(
    tx: &mut Transaction<'_, Postgres>,
    spec: NewTask<'_>,
    matched: Option<&Matched>,
    inbound_id: Uuid,
) -> Result<(), sqlx::Error> {
    let NewTask {
        owner,
        title,
        next_action,
        reason,
        due,
    } = spec;
    let due_in = chrono::Duration::from_std(due).unwrap_or(chrono::Duration::hours(4));
    ledger::tasks::open(
        &mut **tx,
        &ledger::tasks::MessageTask {
            owner,
            title,
            next_action,
            reason,
            due_in,
            record_type: matched.map(|m| m.record_type.as_str()),
            record_id: matched.map(|m| m.record_id),
            message_id: matched.map(|m| m.id),
            inbound_id: Some(inbound_id),
        },
    )
    .await
}

/// Sets the SMS consent of the sender's number, creating the contact if we never wrote to it
/// (so a later send to that number is refused too). Returns whether the state changed.
pub async fn set_sms_consent(
    tx: &mut Transaction<'_, Postgres>,
    contact_id: Option<Uuid>,
    phone: &str,
    state: &str,
    keyword: &str,
) -> Result<(Uuid, bool), sqlx::Error> {
    let contact_id = match contact_id {
        Some(id) => id,
        None => {
            sqlx::query_scalar("INSERT INTO comms.contacts (name) VALUES (NULL) RETURNING id")
                .fetch_one(&mut **tx)
                .await?
        }
    };
    let previous: Option<String> = sqlx::query_scalar(
        "SELECT consent_state FROM comms.contact_channels WHERE contact_id = $1 AND channel = 'sms' FOR UPDATE",
    )
    .bind(contact_id)
    .fetch_optional(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO comms.contact_channels (contact_id, channel, address, consent_state, consent_basis, consent_source, consent_at)
         VALUES ($1, 'sms', $2, $3, 'keyword', $4, now())
         ON CONFLICT (contact_id, channel) DO UPDATE
             SET consent_state = EXCLUDED.consent_state, consent_basis = 'keyword',
                 consent_source = EXCLUDED.consent_source, consent_at = now(), updated_at = now()",
    )
    .bind(contact_id)
    .bind(phone)
    .bind(state)
    .bind(format!("sms keyword {keyword}"))
    .execute(&mut **tx)
    .await?;
    Ok((contact_id, previous.as_deref() != Some(state)))
}
