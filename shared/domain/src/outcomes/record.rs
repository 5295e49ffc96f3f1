//! Recording an outcome: resolve what it is attributed to (and so its owner, client and channel),
//! store it once, write it into the attributed message's timeline, and end the enrolments a
//! booked result finishes — all in one transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{OutcomeError, OutcomeRequest, check};
use crate::messages::ledger;

/// What recording did.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub outcome_id: String,
    /// False when this outcome was already recorded (nothing changed).
    pub created: bool,
    pub owner: String,
    pub client_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    /// Enrolments this outcome ended (`booked`).
    pub exited: Vec<Uuid>,
}

#[derive(Default, sqlx::FromRow)]
struct MessageRef {
    id: Uuid,
    idempotency_key: String,
    owner: String,
    client_id: Option<Uuid>,
    channel: String,
    record_type: String,
    record_id: Uuid,
}

/// Records `request` at `now` (see the module docs of [`super`]).
pub async fn record(
    pool: &PgPool,
    request: &OutcomeRequest,
    now: DateTime<Utc>,
) -> Result<Recorded, OutcomeError> {
    check(request)?;
    let a = &request.attributed_to;
    let mut tx = pool.begin().await?;
    let message = match &a.message {
        Some(reference) => Some(find_message(&mut tx, reference).await?.ok_or_else(|| {
            OutcomeError::refused(
                "unknown_message",
                "attributed_to.message: no message with this id or idempotency key",
            )
        })?),
        None => None,
    };
    // A step message names its enrolment in its key (`seq:<enrolment>:<step>`).
    let enrolment_id = a.enrolment.or_else(|| {
        let key = message.as_ref()?.idempotency_key.strip_prefix("seq:")?;
        key.split_once(':')?.0.parse().ok()
    });
    let enrolment: Option<(String, String, String, Uuid)> =
        match enrolment_id {
            Some(id) => sqlx::query_as(
                "SELECT sequence_name, owner, record_type, record_id FROM comms.sequence_enrolments
             WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?,
            None => None,
        };
    if a.enrolment.is_some() && enrolment.is_none() {
        return Err(OutcomeError::refused(
            "unknown_enrolment",
            "attributed_to.enrolment: no enrolment with this id",
        ));
    }
    let sequence = a
        .sequence
        .clone()
        .or_else(|| enrolment.as_ref().map(|e| e.0.clone()));
    let record: Option<(String, Uuid)> = a
        .record
        .as_ref()
        .map(|r| (r.record_type.as_str().to_string(), r.id))
        .or_else(|| {
            message
                .as_ref()
                .map(|m| (m.record_type.clone(), m.record_id))
        })
        .or_else(|| enrolment.as_ref().map(|e| (e.2.clone(), e.3)));
    let (record_owner, record_client) = match &record {
        Some((kind, id)) => record_owner_client(&mut tx, kind, *id).await?,
        None => (None, None),
    };
    let owner = request
        .owner
        .as_deref()
        .map(str::trim)
        .map(str::to_string)
        .or_else(|| message.as_ref().map(|m| m.owner.clone()))
        .or_else(|| enrolment.as_ref().map(|e| e.1.clone()))
        .or(record_owner)
        .ok_or_else(|| {
            OutcomeError::refused(
                "unknown_owner",
                "owner: nothing it is attributed to names an owner; send owner",
            )
        })?;
    let client_id = message.as_ref().and_then(|m| m.client_id).or(record_client);
    let payload = serde_json::to_value(request).unwrap_or_default();
    let booked = request.booked.as_ref();
    let review = request.review.as_ref();
    let inserted = sqlx::query(
        "INSERT INTO comms.outcomes (id, type, booked_kind, value, currency, review_result, platform,
             rating, message_id, enrolment_id, sequence_name, record_type, record_id, owner,
             client_id, channel, source, occurred_at, recorded_at, payload)
         VALUES ($1, $2, $3, $4::float8::numeric(14, 2), $5, $6, $7, $8::float8::numeric(3, 1),
                 $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(request.outcome_id.trim())
    .bind(&request.outcome_type)
    .bind(booked.map(|b| b.kind.as_str()))
    .bind(booked.and_then(|b| b.value))
    .bind(booked.and_then(|b| b.currency.as_deref()))
    .bind(review.map(|r| r.result.as_str()))
    .bind(review.and_then(|r| r.platform.as_deref()))
    .bind(review.and_then(|r| r.rating))
    .bind(message.as_ref().map(|m| m.id))
    .bind(enrolment.as_ref().and(enrolment_id))
    .bind(&sequence)
    .bind(record.as_ref().map(|r| r.0.as_str()))
    .bind(record.as_ref().map(|r| r.1))
    .bind(&owner)
    .bind(client_id)
    .bind(message.as_ref().map(|m| m.channel.as_str()))
    .bind(request.source.trim())
    .bind(request.occurred_at.unwrap_or(now))
    .bind(now)
    .bind(&payload)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        let stored: serde_json::Value =
            sqlx::query_scalar("SELECT payload FROM comms.outcomes WHERE id = $1")
                .bind(request.outcome_id.trim())
                .fetch_one(&mut *tx)
                .await?;
        if stored != payload {
            return Err(OutcomeError::refused(
                "outcome_id_reused",
                "outcome_id: already recorded with other content",
            ));
        }
        return Ok(Recorded {
            outcome_id: request.outcome_id.trim().to_string(),
            created: false,
            owner,
            client_id,
            message_id: message.map(|m| m.id),
            exited: Vec::new(),
        });
    }
    let result = booked
        .map(|b| b.kind.as_str())
        .or(review.map(|r| r.result.as_str()))
        .unwrap_or_default();
    if let Some(m) = &message {
        let reason = format!("{} {result}", request.outcome_type);
        ledger::append_event(
            &mut *tx,
            ledger::Entry {
                message_id: Some(m.id),
                event_type: "outcome_recorded",
                actor: "comms-outcomes",
                source: request.source.trim(),
                owner: Some(&owner),
                reason: &reason,
                recovery_rule: None,
                detail: &serde_json::json!({
                    "outcome_id": request.outcome_id.trim(),
                    "type": request.outcome_type,
                }),
            },
        )
        .await?;
    }
    let mut exited = Vec::new();
    // A result attributed to a message or an enrolment ends that enrolment; one attributed only
    // to a record (and perhaps a sequence) ends every enrolment for that record.
    let by_record = (a.message.is_none() && a.enrolment.is_none())
        .then_some(record.as_ref())
        .flatten();
    if booked.is_some() {
        let candidates: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM comms.sequence_enrolments
             WHERE state = 'active' AND 'booked' = ANY(
                     SELECT unnest(exit_on) FROM comms.sequences s
                     WHERE s.name = sequence_name AND s.version = sequence_version)
               AND (id = $1
                    OR (record_type = $2 AND record_id = $3 AND ($4::text IS NULL OR sequence_name = $4)))
             FOR UPDATE",
        )
        .bind(enrolment.as_ref().and(enrolment_id))
        .bind(by_record.map(|r| r.0.as_str()))
        .bind(by_record.map(|r| r.1))
        .bind(&sequence)
        .fetch_all(&mut *tx)
        .await?;
        let detail = format!("outcome {}", request.outcome_id.trim());
        for id in candidates {
            let actor = crate::sequences::exit::ACTOR;
            if crate::sequences::exit::end(&mut tx, id, "booked", &detail, actor, now).await? {
                exited.push(id);
            }
        }
    }
    tx.commit().await?;
    super::metrics()
        .with_label_values(&[request.outcome_type.as_str(), result])
        .inc();
    Ok(Recorded {
        outcome_id: request.outcome_id.trim().to_string(),
        created: true,
        owner,
        client_id,
        message_id: message.map(|m| m.id),
        exited,
    })
}

async fn find_message(
    tx: &mut Transaction<'_, Postgres>,
    reference: &str,
) -> Result<Option<MessageRef>, sqlx::Error> {
    let id: Option<Uuid> = reference.parse().ok();
    sqlx::query_as(
        "SELECT id, idempotency_key, owner, client_id, channel, record_type, record_id
         FROM comms.messages WHERE idempotency_key = $1 OR id = $2 LIMIT 1",
    )
    .bind(reference)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// The owner and client of a platform record.
async fn record_owner_client(
    tx: &mut Transaction<'_, Postgres>,
    kind: &str,
    id: Uuid,
) -> Result<(Option<String>, Option<Uuid>), sqlx::Error> {
    let found: Option<(Option<String>, Option<Uuid>)> = sqlx::query_as(
        "SELECT owner, client_id FROM (
             SELECT 'client' AS kind, id, owner, id AS client_id FROM comms.clients
             UNION ALL SELECT 'lead', id, owner, client_id FROM comms.leads
             UNION ALL SELECT 'project', id, owner, client_id FROM comms.projects
             UNION ALL SELECT 'report', id, owner, client_id FROM comms.reports
             UNION ALL SELECT 'incident', id, owner, client_id FROM comms.incidents
             UNION ALL SELECT 'approval', id, owner, client_id FROM comms.approvals) r
         WHERE r.kind = $1 AND r.id = $2",
    )
    .bind(kind)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.unwrap_or((None, None)))
}
