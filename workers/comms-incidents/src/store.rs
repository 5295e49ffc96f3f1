//! The worker's records: incidents and their events, client links, the timeline (`incident_log`),
//! owner tasks, queued notices and internal notes. Nothing here touches `comms.messages`: the
//! sender stays the one owner of message state.

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::{ACTOR, metrics};
use comms_domain::incidents::event::{EventType, IncidentEvent, TemplateRef};

/// Creates the incident if it is new and locks it; returns the latest sequence applied (0: none).
pub async fn lock_incident(
    tx: &mut Transaction<'_, Postgres>,
    event: &IncidentEvent,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.incidents (id, title, severity, owner, started_at, source)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(event.incident_id)
    .bind(&event.title)
    .bind(event.severity.as_str())
    .bind(&event.owner)
    .bind(event.occurred_at)
    .bind(&event.source)
    .execute(&mut **tx)
    .await?;
    sqlx::query_scalar("SELECT sequence FROM comms.incidents WHERE id = $1 FOR UPDATE")
        .bind(event.incident_id)
        .fetch_one(&mut **tx)
        .await
}

/// Records a newer event: the incident's current facts, the event, the client links and the
/// internal summary.
pub async fn record_event(
    tx: &mut Transaction<'_, Postgres>,
    kind: EventType,
    event: &IncidentEvent,
    clients: &[(Uuid, Option<Uuid>)],
) -> Result<(), sqlx::Error> {
    let template = event
        .template
        .as_ref()
        .and_then(|t| serde_json::to_value(t).ok());
    sqlx::query(
        "UPDATE comms.incidents SET title = $2, severity = $3, owner = $4, sequence = $5,
             facts_verified = $6, source = $7, template = COALESCE($8, template),
             client_id = COALESCE(client_id, $9)
         WHERE id = $1",
    )
    .bind(event.incident_id)
    .bind(&event.title)
    .bind(event.severity.as_str())
    .bind(&event.owner)
    .bind(event.sequence)
    .bind(event.facts_verified)
    .bind(&event.source)
    .bind(&template)
    .bind(clients.first().map(|(c, _)| *c))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO comms.incident_events (incident_id, sequence, event_type, title, severity,
             facts_verified, owner, source, occurred_at, affected, template)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(event.incident_id)
    .bind(event.sequence)
    .bind(kind.as_str())
    .bind(&event.title)
    .bind(event.severity.as_str())
    .bind(event.facts_verified)
    .bind(&event.owner)
    .bind(&event.source)
    .bind(event.occurred_at)
    .bind(serde_json::to_value(&event.affected).unwrap_or_default())
    .bind(&template)
    .execute(&mut **tx)
    .await?;
    for (client, project) in clients {
        sqlx::query(
            "INSERT INTO comms.incident_clients (incident_id, client_id, project_id, added_at_sequence)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(event.incident_id)
        .bind(client)
        .bind(project)
        .bind(event.sequence)
        .execute(&mut **tx)
        .await?;
    }
    if let Some(summary) = event
        .summary_internal
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        sqlx::query(
            "INSERT INTO internal.incident_notes (incident_id, sequence, kind, body)
             VALUES ($1, $2, 'summary_internal', $3)",
        )
        .bind(event.incident_id)
        .bind(event.sequence)
        .bind(summary)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Appends to the incident's timeline.
pub use comms_domain::incidents::ops::log;

/// The title of the owner's verify task (the words).
pub fn verify_task_title(incident: Uuid) -> String {
    format!("verify the facts of incident {incident}")
}

/// Marks the incident's automation paused and opens the owner's verify task (once).
pub async fn mark_paused(pool: &PgPool, event: &IncidentEvent) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE comms.incidents SET automation_paused = true WHERE id = $1")
        .bind(event.incident_id)
        .execute(pool)
        .await?;
    let opened = sqlx::query(
        "INSERT INTO comms.tasks (owner, title, next_action, reason, record_type, record_id, due_at)
         SELECT $2, $3, $4, 'incident_facts_unverified', 'incident', $1, now() + interval '1 hour'
         WHERE NOT EXISTS (SELECT 1 FROM comms.tasks WHERE record_type = 'incident'
                           AND record_id = $1 AND title = $3 AND state = 'open')",
    )
    .bind(event.incident_id)
    .bind(&event.owner)
    .bind(verify_task_title(event.incident_id))
    .bind("verify the facts, publish an update with facts_verified: true, then decide with `commsctl incident resume-automation <id> --by OWNER`")
    .execute(pool)
    .await?;
    if opened.rows_affected() > 0 {
        log(
            pool,
            event.incident_id,
            "verify_task_opened",
            ACTOR,
            serde_json::json!({"owner": event.owner}),
        )
        .await?;
    }
    Ok(())
}

/// The facts are verified: the owner's verify task is done.
pub async fn close_verify_task(pool: &PgPool, incident: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE comms.tasks SET state = 'done', done_at = now(), done_by = $3
         WHERE record_type = 'incident' AND record_id = $1 AND title = $2 AND state = 'open'",
    )
    .bind(incident)
    .bind(verify_task_title(incident))
    .bind(ACTOR)
    .execute(pool)
    .await?;
    Ok(())
}

/// The template of this event's notice: the event's; else the incident's latest; else `default`.
/// A resolution always takes `default`, the resolution template, with the event's variables (or
/// else the latest): a resolved event built by `commsctl incident resolve` or the API carries the
/// incident's latest template, whose wording is for an ongoing incident.
pub async fn notice_template(
    pool: &PgPool,
    event: &IncidentEvent,
    default: &str,
    resolution: bool,
) -> Result<TemplateRef, sqlx::Error> {
    let found = match &event.template {
        Some(template) => Some(template.clone()),
        None => {
            let stored: Option<serde_json::Value> =
                sqlx::query_scalar("SELECT template FROM comms.incidents WHERE id = $1")
                    .bind(event.incident_id)
                    .fetch_one(pool)
                    .await?;
            stored.and_then(|v| serde_json::from_value::<TemplateRef>(v).ok())
        }
    };
    Ok(match found {
        Some(template) if !resolution => template,
        found => TemplateRef {
            name: default.to_string(),
            version: None,
            vars: found.map(|t| t.vars).unwrap_or_default(),
        },
    })
}

/// Queues the notice of this sequence (once). The first notice of an incident, and any notice
/// whose template is not pre-approved for updates, waits for the owner's approval.
pub async fn queue_notice(
    pool: &PgPool,
    event: &IncidentEvent,
    purpose: &str,
    template: &TemplateRef,
    preapproved: &[&str],
) -> Result<bool, sqlx::Error> {
    let approved_before: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM comms.incident_notices WHERE incident_id = $1
                        AND basis = 'owner_approval' AND state IN ('approved', 'done'))",
    )
    .bind(event.incident_id)
    .fetch_one(pool)
    .await?;
    let preapproved = approved_before && preapproved.contains(&template.name.as_str());
    let (state, basis) = if preapproved {
        ("approved", Some("preapproved_template"))
    } else {
        ("awaiting_approval", None)
    };
    let mut vars = template.vars.clone();
    vars.entry("severity")
        .or_insert_with(|| event.severity.as_str().into());
    let inserted = sqlx::query(
        "INSERT INTO comms.incident_notices (incident_id, sequence, purpose, template_base,
             template_version, vars, state, basis, approved_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $7 = 'approved' THEN now() END)
         ON CONFLICT (incident_id, sequence) DO NOTHING",
    )
    .bind(event.incident_id)
    .bind(event.sequence)
    .bind(purpose)
    .bind(&template.name)
    .bind(template.version)
    .bind(serde_json::Value::Object(vars))
    .bind(state)
    .bind(basis)
    .execute(pool)
    .await?;
    if inserted.rows_affected() > 0 {
        log(
            pool,
            event.incident_id,
            "notice_queued",
            ACTOR,
            serde_json::json!({
                "sequence": event.sequence, "purpose": purpose, "template": template.name,
                "state": state, "basis": basis,
            }),
        )
        .await?;
    }
    Ok(true)
}

/// Resolution: the incident is resolved, the owner's open incident tasks are closed, and the
/// time to resolution is recorded (once).
pub async fn resolved(pool: &PgPool, event: &IncidentEvent) -> Result<(), sqlx::Error> {
    let seconds: Option<f64> = sqlx::query_scalar(
        "UPDATE comms.incidents SET state = 'resolved', resolved_at = $2
         WHERE id = $1 AND state <> 'resolved'
         RETURNING extract(epoch FROM ($2 - started_at))::float8",
    )
    .bind(event.incident_id)
    .bind(event.occurred_at)
    .fetch_optional(pool)
    .await?;
    let Some(seconds) = seconds else {
        return Ok(());
    };
    metrics::time_to_resolution(seconds.max(0.0));
    sqlx::query(
        "UPDATE comms.tasks SET state = 'done', done_at = now(), done_by = $2
         WHERE record_type = 'incident' AND record_id = $1 AND state = 'open' AND message_id IS NULL",
    )
    .bind(event.incident_id)
    .bind(ACTOR)
    .execute(pool)
    .await?;
    log(
        pool,
        event.incident_id,
        "resolved",
        ACTOR,
        serde_json::json!({"time_to_resolution_seconds": seconds}),
    )
    .await
}
