//! Enrolment (`comms.enrolment.v1`): a contact joins the active version of a sequence, for a
//! record, an owner and a source. Upstream sends it on `comms.sequence` (routing key
//! `sequence.enrol`) or `POST /v1/enrolments`; operators use `commsctl sequences enrol`. All three
//! call [`enrol`]. Enrolling a contact in a sequence it is already in is a no-op that returns the
//! existing enrolment. Also here: an owner's manual stop.
//!
//! The contract is kept in agreement with `docs/enrolment.schema.json` by
//! `sequences/schema_agreement.rs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::SequenceError;

/// The `schema` marker of this version.
pub const ENROLMENT_V1: &str = "comms.enrolment.v1";
/// The routing key of an enrolment on `comms.sequence`.
pub const ROUTING_KEY: &str = "sequence.enrol";

/// An enrolment request as sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub contact_id: Uuid,
    /// The sequence's name: the contact joins its active version.
    pub sequence: String,
    pub record: EnrolmentRecord,
    pub owner: String,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentRecord {
    #[serde(rename = "type")]
    pub record_type: crate::contract::RecordType,
    pub id: Uuid,
}

/// Parses and checks an enrolment; the error is the reason it is refused.
pub fn parse(raw: &[u8]) -> Result<EnrolmentRequest, String> {
    let mut body = serde_json::Deserializer::from_slice(raw);
    let request: EnrolmentRequest =
        serde_path_to_error::deserialize(&mut body).map_err(|e| {
            match e.path().to_string().as_str() {
                "." => format!("invalid_enrolment: {}", describe(e.inner())),
                field => format!("invalid_enrolment: {field}: {}", describe(e.inner())),
            }
        })?;
    // Anything after the object (a second one, garbage) is refused, as before.
    body.end()
        .map_err(|e| format!("invalid_enrolment: {}", describe(&e)))?;
    check(&request)?;
    Ok(request)
}

/// A serde error without the value that caused it (it may be personal data).
fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    // serde_json quotes offending values after `invalid value: string "…"`; keep only the kind.
    match text.split_once(": string \"") {
        Some((head, _)) => format!("{head}: a string that is not accepted"),
        None => text,
    }
}

/// The value rules serde cannot express.
pub fn check(request: &EnrolmentRequest) -> Result<(), String> {
    let mut problems = Vec::new();
    if request.schema.as_deref().is_some_and(|s| s != ENROLMENT_V1) {
        problems.push(format!("schema: expected {ENROLMENT_V1} or no schema key"));
    }
    if !super::valid_name(&request.sequence) {
        problems.push("sequence: expected a sequence name [a-z0-9_.-]{1,100}".into());
    }
    for (field, value) in [("owner", &request.owner), ("source", &request.source)] {
        if value.trim().is_empty() || value.chars().count() > 200 || value.contains('\0') {
            problems.push(format!("{field}: expected 1-200 characters, not blank"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("invalid_enrolment: {}", problems.join("; ")))
    }
}

/// The result of an enrolment.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Enrolled {
    pub enrolment_id: Uuid,
    pub sequence: String,
    pub version: i32,
    pub state: String,
    pub next_step: Option<i32>,
    pub next_due_at: Option<DateTime<Utc>>,
    /// False when the contact was already enrolled (nothing changed).
    #[sqlx(default)]
    pub created: bool,
}

/// Enrols a contact at `now`. Refused with a reason when the sequence has no active version, the
/// contact does not exist, or the contact is not of the sequence's audience.
pub async fn enrol(
    pool: &PgPool,
    request: &EnrolmentRequest,
    now: DateTime<Utc>,
) -> Result<Enrolled, SequenceError> {
    check(request).map_err(SequenceError::Invalid)?;
    let mut tx = pool.begin().await?;
    if let Some(existing) = existing(&mut tx, &request.sequence, request.contact_id).await? {
        return Ok(existing);
    }
    let active: Option<(i32, String)> = sqlx::query_as(
        "SELECT version, audience FROM comms.sequences WHERE name = $1 AND state = 'active'",
    )
    .bind(&request.sequence)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((version, audience)) = active else {
        return Err(SequenceError::Invalid(format!(
            "sequence_not_active: sequence {} has no active version",
            request.sequence
        )));
    };
    let contact: Option<(Option<Uuid>, Option<Uuid>, Option<String>)> =
        sqlx::query_as("SELECT lead_id, client_id, time_zone FROM comms.contacts WHERE id = $1")
            .bind(request.contact_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((lead, client, time_zone)) = contact else {
        return Err(SequenceError::Invalid(
            "unknown_contact: contact_id: no contact with this id".into(),
        ));
    };
    let fits = match audience.as_str() {
        "leads" => lead.is_some(),
        _ => client.is_some(),
    };
    if !fits {
        return Err(SequenceError::Invalid(format!(
            "audience_mismatch: sequence {} is for {audience}; the contact is not one",
            request.sequence
        )));
    }
    let first = super::store::steps(&mut *tx, &request.sequence, version)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| SequenceError::Conflict("the sequence has no steps".into()))?;
    let due = super::timing::due_after(first.timing(), now, time_zone.as_deref());
    let inserted: Option<Enrolled> = sqlx::query_as(
        "INSERT INTO comms.sequence_enrolments (sequence_name, sequence_version, contact_id,
             record_type, record_id, owner, source, next_step, next_due_at, enrolled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9)
         ON CONFLICT (sequence_name, contact_id) DO NOTHING
         RETURNING id AS enrolment_id, sequence_name AS sequence, sequence_version AS version,
                   state, next_step, next_due_at, true AS created",
    )
    .bind(&request.sequence)
    .bind(version)
    .bind(request.contact_id)
    .bind(request.record.record_type.as_str())
    .bind(request.record.id)
    .bind(request.owner.trim())
    .bind(request.source.trim())
    .bind(due)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let enrolled = match inserted {
        Some(enrolled) => enrolled,
        // A concurrent enrolment of the same contact won: this one is the no-op.
        None => existing(&mut tx, &request.sequence, request.contact_id)
            .await?
            .ok_or_else(|| SequenceError::Conflict("enrolment vanished".into()))?,
    };
    tx.commit().await?;
    Ok(enrolled)
}

async fn existing(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    sequence: &str,
    contact: Uuid,
) -> Result<Option<Enrolled>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id AS enrolment_id, sequence_name AS sequence, sequence_version AS version, state,
                next_step, next_due_at, false AS created
         FROM comms.sequence_enrolments WHERE sequence_name = $1 AND contact_id = $2",
    )
    .bind(sequence)
    .bind(contact)
    .fetch_optional(&mut **tx)
    .await
}

/// One enrolment as `commsctl sequences show` lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EnrolmentRow {
    pub id: Uuid,
    pub sequence_name: String,
    pub sequence_version: i32,
    pub contact_id: Uuid,
    pub owner: String,
    pub state: String,
    pub exit_reason: Option<String>,
    pub exit_detail: Option<String>,
    pub next_step: Option<i32>,
    pub next_due_at: Option<DateTime<Utc>>,
    pub enrolled_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// One enrolment.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<EnrolmentRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, sequence_name, sequence_version, contact_id, owner, state, exit_reason,
                exit_detail, next_step, next_due_at, enrolled_at, ended_at
         FROM comms.sequence_enrolments WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// An owner's manual stop: the enrolment ends with reason `stopped` and the owner's words, and
/// the stop is audited. Stopping an enrolment that already ended changes nothing (false).
pub async fn stop(
    pool: &PgPool,
    id: Uuid,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, SequenceError> {
    let (by, reason) = (by.trim(), reason.trim());
    if by.is_empty() || reason.is_empty() {
        return Err(SequenceError::Invalid(
            "--by and --reason are required".into(),
        ));
    }
    let mut tx = pool.begin().await?;
    let found: Option<(String, i32)> = sqlx::query_as(
        "SELECT sequence_name, sequence_version FROM comms.sequence_enrolments WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((name, version)) = found else {
        return Err(SequenceError::NotFound(format!("enrolment {id}")));
    };
    let detail = format!("stopped by {by}: {reason}");
    let stopped = super::exit::end(&mut tx, id, "stopped", &detail, by, now).await?;
    if stopped {
        sqlx::query(
            "INSERT INTO comms.sequence_audit (sequence_name, sequence_version, action, actor, reason, detail)
             VALUES ($1, $2, 'stopped', $3, $4, jsonb_build_object('enrolment', $5::uuid))",
        )
        .bind(&name)
        .bind(version)
        .bind(by)
        .bind(reason)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(stopped)
}
