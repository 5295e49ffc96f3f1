//! Released messages in a group: a request the pause release published again
//! (`x-comms-released`) is already recorded, `received`, so the group finds its message, keeps
//! the per-recipient order of releases, and claims it with one statement instead of recording it.
//!
//! This is what lets a long pause's backlog drain at the speed of live sending: the one-message
//! path would decide each released message alone, with a claim and an outcome of its own.

use std::collections::{HashMap, HashSet};

use comms_domain::contract::ValidSendRequest;
use comms_domain::messages::ledger::{batch, record};
use comms_domain::pause::release::{OLDER_RELEASE_PENDING, RELEASED_HEADER};
use comms_runtime::runtime::Incoming;
use sqlx::PgPool;
use uuid::Uuid;

use super::write::NewMessage;
use crate::store::{ACTOR, DISPATCH_RECOVERY, Message};

/// The recorded, still `received` messages of the candidates that came as releases, by
/// idempotency key. One statement, only when the group holds a release.
pub async fn find(
    pool: &PgPool,
    deliveries: &[Incoming],
    candidates: &[(usize, ValidSendRequest)],
) -> Result<HashMap<String, Message>, sqlx::Error> {
    let keys: Vec<&str> = candidates
        .iter()
        .filter(|(index, _)| {
            comms_runtime::amqp::header_str(&deliveries[*index].headers, RELEASED_HEADER).is_some()
        })
        .map(|(_, request)| request.idempotency_key.as_str())
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let found: Vec<Message> = sqlx::query_as(&format!(
        "SELECT {} FROM comms.messages
         WHERE idempotency_key = ANY($1) AND delivery_state = 'received'
           AND held_by_pause IS NOT NULL",
        record::RECORDED_COLUMNS
    ))
    .bind(&keys)
    .fetch_all(pool)
    .await?;
    Ok(found
        .into_iter()
        .map(|message| (message.idempotency_key.clone(), message))
        .collect())
}

/// Which of `messages` must wait for an older released message to the same address on the same
/// channel (one not yet sent or failed, in this group or not): the one-message path waits for
/// it, so releases reach each recipient in creation order.
pub async fn behind_older(
    pool: &PgPool,
    messages: &[&Message],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    if messages.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    let waiting: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT m.id FROM comms.messages m WHERE m.id = ANY($1) AND {OLDER_RELEASE_PENDING}"
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(waiting.into_iter().collect())
}

/// Claims the released members for dispatch by the group's `claim` in one statement
/// ([`batch::claim_released`]); returns those claimed (another delivery may have been first).
/// The claim also marks their calls as started, as the new members' does ([`super::write`]).
pub async fn claim(
    pool: &PgPool,
    members: &[(&NewMessage<'_>, Uuid)],
    claim: Uuid,
) -> Result<Vec<Message>, sqlx::Error> {
    let claims: Vec<batch::ReleasedClaim<'_>> = members
        .iter()
        .map(|(member, message_id)| batch::ReleasedClaim {
            message_id: *message_id,
            content: member.rendered.stored(),
            client_id: member.client_id,
            account: &member.account,
        })
        .collect();
    batch::claim_released(pool, &claims, claim, ACTOR, DISPATCH_RECOVERY).await
}
