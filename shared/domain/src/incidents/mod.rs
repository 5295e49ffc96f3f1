//! What the sender needs to know about incident notices, kept here so the sender does not depend
//! on the incident worker: the idempotency key every notice carries, and whether the notice it
//! belongs to was cleared (approved by its owner, or sent with a pre-approved update template).
//!
//! The incident worker (`comms-incidents`) owns the notices; the sender only reads their state.
//! The event contract ([`event`]) and the operator's actions and views ([`ops`]) live here too,
//! so `commsctl incident` and the gateway's admin API share them without depending on a worker.

pub mod affected;
mod compose;
pub mod event;
pub mod ops;

use sqlx::PgPool;
use uuid::Uuid;

/// The idempotency key of one notice to one contact on one channel:
/// `incident:<id>:<sequence>:<contact>:<channel>`.
pub fn notice_key(incident: Uuid, sequence: i64, contact: Uuid, channel: &str) -> String {
    format!("incident:{incident}:{sequence}:{contact}:{channel}")
}

/// The incident and sequence of a notice key, if `key` is one.
pub fn parse_notice_key(key: &str) -> Option<(Uuid, i64)> {
    let mut parts = key.split(':');
    if parts.next()? != "incident" {
        return None;
    }
    let incident = parts.next()?.parse().ok()?;
    let sequence = parts.next()?.parse().ok()?;
    Some((incident, sequence))
}

/// The decision on the notice a request with `key` belongs to: `approved` once the notice was
/// cleared, `rejected` when its owner rejected it, `None` while it waits (or `key` is not a
/// notice key). The sender takes it as the message's approval decision.
pub async fn notice_clearance(pool: &PgPool, key: &str) -> Result<Option<String>, sqlx::Error> {
    let Some((incident, sequence)) = parse_notice_key(key) else {
        return Ok(None);
    };
    let state: Option<String> = sqlx::query_scalar(
        "SELECT state FROM comms.incident_notices WHERE incident_id = $1 AND sequence = $2",
    )
    .bind(incident)
    .bind(sequence)
    .fetch_optional(pool)
    .await?;
    Ok(state.as_deref().and_then(notice_decision).map(Into::into))
}

/// The approval decision a notice in `state` gives its send requests: `approved` once cleared
/// (approved or done), `rejected` when its owner rejected it, `None` while it waits.
pub fn notice_decision(state: &str) -> Option<&'static str> {
    match state {
        "approved" | "done" => Some("approved"),
        "rejected" => Some("rejected"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_key_names_its_incident_and_sequence() {
        let (incident, contact) = (Uuid::new_v4(), Uuid::new_v4());
        let key = notice_key(incident, 7, contact, "sms");
        assert_eq!(key, format!("incident:{incident}:7:{contact}:sms"));
        assert_eq!(parse_notice_key(&key), Some((incident, 7)));
        assert_eq!(parse_notice_key("welcome-0001"), None);
        assert_eq!(parse_notice_key("incident:nope:7"), None);
    }
}
