//! Stored sequences: add a draft version, activate it (the escalation owner's approval, audited,
//! refused without an escalation owner and a rollback path), list, show. Rolling back is in
//! [`super::rollback`].
//!
//! Every decision is one transaction with its row in `comms.sequence_audit`, refusals included,
//! so the audit says who tried what and why it was refused. The database itself refuses any
//! change to an active version (migration 0018).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};

use super::SequenceError;
use super::definition::{Definition, Timing};

/// A stored version, as `list` and `show` print it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SequenceRow {
    pub name: String,
    pub version: i32,
    pub state: String,
    pub audience: String,
    pub escalation_owner: Option<String>,
    pub rollback: Option<String>,
    pub correction_template: Option<String>,
    pub correction_version: Option<i32>,
    pub exit_on: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub activated_by: Option<String>,
    pub activated_at: Option<DateTime<Utc>>,
    pub rolled_back_by: Option<String>,
    pub rolled_back_at: Option<DateTime<Utc>>,
    pub rollback_reason: Option<String>,
    pub rollback_cancelled: Option<i32>,
    pub corrections_sent: i32,
}

const COLUMNS: &str =
    "name, version, state, audience, escalation_owner, rollback, correction_template,
    correction_version, exit_on, created_by, created_at, activated_by, activated_at, rolled_back_by,
    rolled_back_at, rollback_reason, rollback_cancelled, corrections_sent";

/// One step as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StepRow {
    pub position: i32,
    pub channel: String,
    pub kind: String,
    pub template_name: String,
    pub template_version: i32,
    pub delay_seconds: Option<i32>,
    pub local_time: Option<chrono::NaiveTime>,
}

impl StepRow {
    pub fn timing(&self) -> Timing {
        match (self.delay_seconds, self.local_time) {
            (_, Some(at)) => Timing::At(at),
            (delay, None) => Timing::After(std::time::Duration::from_secs(
                u64::try_from(delay.unwrap_or(0)).unwrap_or(0),
            )),
        }
    }
}

/// A version with its steps, enrolment counts by state and escalated steps by outcome.
#[derive(Debug, Clone, Serialize)]
pub struct SequenceView {
    #[serde(flatten)]
    pub sequence: SequenceRow,
    pub steps: Vec<StepRow>,
    pub enrolments: Vec<(String, i64)>,
    /// Steps escalated to the escalation owner, by outcome (`failed`, `blocked`, `undelivered`,
    /// `refused`; docs/sequences.md "Escalation").
    pub escalations: Vec<(String, i64)>,
}

pub(super) async fn audit(
    tx: &mut Transaction<'_, Postgres>,
    (name, version): (&str, i32),
    action: &str,
    actor: &str,
    reason: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.sequence_audit (sequence_name, sequence_version, action, actor, reason, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(name)
    .bind(version)
    .bind(action)
    .bind(actor)
    .bind(reason)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Checks that a template version exists, is approved and is of `channel`.
async fn approved_template(
    tx: &mut Transaction<'_, Postgres>,
    (name, version): (&str, i32),
    channel: Option<&str>,
    field: &str,
) -> Result<Option<String>, sqlx::Error> {
    let found: Option<(String, String)> = sqlx::query_as(
        "SELECT state, channel FROM comms.templates WHERE name = $1 AND version = $2",
    )
    .bind(name)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match found {
        None => Some(format!("{field}: template {name}@{version} does not exist")),
        Some((state, _)) if state != "approved" => Some(format!(
            "{field}: template {name}@{version} is {state}, not approved"
        )),
        Some((_, found)) if channel.is_some_and(|c| c != found) => Some(format!(
            "{field}: template {name}@{version} is for {found}, the step is {}",
            channel.unwrap_or_default()
        )),
        Some(_) => None,
    })
}

/// Stores a checked definition as the next version of its name, as a draft. Returns the version.
pub async fn add(pool: &PgPool, definition: &Definition, by: &str) -> Result<i32, SequenceError> {
    let by = by.trim();
    if by.is_empty() {
        return Err(SequenceError::Invalid(
            "--by: who adds it must be named".into(),
        ));
    }
    let name = definition.file.name.as_str();
    let mut tx = pool.begin().await?;
    let mut problems = Vec::new();
    for (i, step) in definition.steps.iter().enumerate() {
        let field = format!("steps[{i}].template");
        let template = (step.template_name.as_str(), step.template_version);
        if let Some(problem) =
            approved_template(&mut tx, template, Some(&step.channel), &field).await?
        {
            problems.push(problem);
        }
    }
    if let Some((template, version)) = &definition.correction {
        let field = "rollback.correction_template";
        if let Some(problem) = approved_template(&mut tx, (template, *version), None, field).await?
        {
            problems.push(problem);
        }
    }
    if !problems.is_empty() {
        return Err(SequenceError::Invalid(problems.join("; ")));
    }
    // Versions of one name are numbered one after another; the lock keeps two adds apart.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('comms.sequences:' || $1))")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let rollback = definition.file.rollback.as_ref().map(|_| {
        if definition.correction.is_some() {
            "cancel_and_correct"
        } else {
            "cancel"
        }
    });
    let normalised = serde_json::to_value(&definition.file).unwrap_or_default();
    let version: i32 = sqlx::query_scalar(
        "INSERT INTO comms.sequences (name, version, audience, exit_on, escalation_owner, rollback,
             correction_template, correction_version, definition, created_by)
         SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9
         FROM comms.sequences WHERE name = $1
         RETURNING version",
    )
    .bind(name)
    .bind(&definition.file.audience)
    .bind(&definition.exit_on)
    .bind(definition.file.escalation_owner.as_deref().map(str::trim))
    .bind(rollback)
    .bind(definition.correction.as_ref().map(|c| c.0.as_str()))
    .bind(definition.correction.as_ref().map(|c| c.1))
    .bind(normalised)
    .bind(by)
    .fetch_one(&mut *tx)
    .await?;
    for step in &definition.steps {
        let (delay, local) = match step.timing {
            Timing::After(d) => (Some(i32::try_from(d.as_secs()).unwrap_or(i32::MAX)), None),
            Timing::At(t) => (None, Some(t)),
        };
        sqlx::query(
            "INSERT INTO comms.sequence_steps (sequence_name, sequence_version, position, channel,
                 kind, template_name, template_version, delay_seconds, local_time)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(name)
        .bind(version)
        .bind(step.position)
        .bind(&step.channel)
        .bind(&step.kind)
        .bind(&step.template_name)
        .bind(step.template_version)
        .bind(delay)
        .bind(local)
        .execute(&mut *tx)
        .await?;
    }
    let detail = serde_json::json!({ "steps": definition.steps.len() });
    audit(&mut tx, (name, version), "added", by, None, detail).await?;
    tx.commit().await?;
    Ok(version)
}

/// Activates a draft: the escalation owner's (or a delegate's) approval. Refused, and audited as
/// refused, without an escalation owner or a rollback path, or with a template no longer approved.
/// An older active version of the name is superseded: its enrolments run on, new ones join this.
pub async fn activate(
    pool: &PgPool,
    (name, version): (&str, i32),
    by: &str,
    now: DateTime<Utc>,
) -> Result<SequenceRow, SequenceError> {
    let by = by.trim();
    if by.is_empty() {
        return Err(SequenceError::Invalid(
            "--by: the approving owner must be named".into(),
        ));
    }
    let mut tx = pool.begin().await?;
    let row = lock(&mut tx, name, version).await?;
    if row.state != "draft" {
        return Err(SequenceError::Conflict(format!(
            "sequence {name}@{version} is {} (only a draft can be activated)",
            row.state
        )));
    }
    let mut refusal = super::definition::Definition::missing_for_activation(
        row.escalation_owner.as_deref(),
        row.rollback.as_deref(),
    );
    if refusal.is_none() {
        let owner = row.escalation_owner.as_deref().unwrap_or_default();
        if !crate::approvals::may_decide(&mut *tx, owner, by).await? {
            refusal = Some(format!(
                "{by} is neither the escalation owner {owner} nor a delegate they named"
            ));
        }
    }
    if refusal.is_none() {
        refusal = templates_still_approved(&mut tx, &row).await?;
    }
    if let Some(missing) = refusal {
        let detail = serde_json::json!({ "refused": missing });
        audit(
            &mut tx,
            (name, version),
            "activation_refused",
            by,
            Some(&missing),
            detail,
        )
        .await?;
        tx.commit().await?;
        return Err(SequenceError::NotActivatable {
            name: name.into(),
            version,
            missing,
        });
    }
    sqlx::query(
        "UPDATE comms.sequences SET state = 'superseded' WHERE name = $1 AND state = 'active'",
    )
    .bind(name)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE comms.sequences SET state = 'active', activated_by = $3, activated_at = $4
         WHERE name = $1 AND version = $2",
    )
    .bind(name)
    .bind(version)
    .bind(by)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    audit(
        &mut tx,
        (name, version),
        "activated",
        by,
        None,
        serde_json::json!({}),
    )
    .await?;
    let row = lock(&mut tx, name, version).await?;
    tx.commit().await?;
    Ok(row)
}

async fn templates_still_approved(
    tx: &mut Transaction<'_, Postgres>,
    row: &SequenceRow,
) -> Result<Option<String>, sqlx::Error> {
    let unapproved: Vec<String> = sqlx::query_scalar(
        "SELECT s.template_name || '@' || s.template_version FROM comms.sequence_steps s
         JOIN comms.templates t ON t.name = s.template_name AND t.version = s.template_version
         WHERE s.sequence_name = $1 AND s.sequence_version = $2 AND t.state <> 'approved'
         UNION ALL
         SELECT t.name || '@' || t.version FROM comms.templates t
         WHERE t.name = $3 AND t.version = $4 AND t.state <> 'approved'",
    )
    .bind(&row.name)
    .bind(row.version)
    .bind(&row.correction_template)
    .bind(row.correction_version)
    .fetch_all(&mut **tx)
    .await?;
    Ok((!unapproved.is_empty())
        .then(|| format!("templates no longer approved: {}", unapproved.join(", "))))
}

pub(super) async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    version: i32,
) -> Result<SequenceRow, SequenceError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM comms.sequences WHERE name = $1 AND version = $2 FOR UPDATE"
    ))
    .bind(name)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| SequenceError::NotFound(format!("{name}@{version}")))
}

/// Every version, newest first per name.
pub async fn list(pool: &PgPool) -> Result<Vec<SequenceRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM comms.sequences ORDER BY name, version DESC"
    ))
    .fetch_all(pool)
    .await
}

/// One version with its steps and enrolment counts.
pub async fn show(
    pool: &PgPool,
    (name, version): (&str, i32),
) -> Result<SequenceView, SequenceError> {
    let sequence: SequenceRow = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM comms.sequences WHERE name = $1 AND version = $2"
    ))
    .bind(name)
    .bind(version)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| SequenceError::NotFound(format!("{name}@{version}")))?;
    let steps = steps(pool, name, version).await?;
    let enrolments = sqlx::query_as(
        "SELECT state, count(*) FROM comms.sequence_enrolments
         WHERE sequence_name = $1 AND sequence_version = $2 GROUP BY state ORDER BY state",
    )
    .bind(name)
    .bind(version)
    .fetch_all(pool)
    .await?;
    let escalations = sqlx::query_as(
        "SELECT x.outcome, count(*) FROM comms.sequence_escalations x
         JOIN comms.sequence_enrolments e ON e.id = x.enrolment_id
         WHERE e.sequence_name = $1 AND e.sequence_version = $2 GROUP BY x.outcome ORDER BY x.outcome",
    )
    .bind(name)
    .bind(version)
    .fetch_all(pool)
    .await?;
    Ok(SequenceView {
        sequence,
        steps,
        enrolments,
        escalations,
    })
}

/// The steps of a version, in order.
pub async fn steps<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    name: &str,
    version: i32,
) -> Result<Vec<StepRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT position, channel, kind, template_name, template_version, delay_seconds, local_time
         FROM comms.sequence_steps WHERE sequence_name = $1 AND sequence_version = $2
         ORDER BY position",
    )
    .bind(name)
    .bind(version)
    .fetch_all(executor)
    .await
}
