//! `commsctl incident show` / `GET /v1/incidents/{id}`: an incident's whole story — its events,
//! pauses, approvals, notices with counts per channel and state, skipped contacts by reason, and
//! its time to first notice and to resolution. Internal notes are not part of it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::{IncidentError, IncidentSummary, SUMMARY};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub what: String,
    pub actor: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoticeView {
    pub sequence: i64,
    pub purpose: String,
    pub template: String,
    pub state: String,
    pub basis: Option<String>,
    pub decided_by: Option<String>,
    pub published: serde_json::Value,
    /// Messages by channel and delivery state, as the sender recorded them.
    pub messages: Vec<(String, String, i64)>,
    pub skipped_by_reason: Vec<(String, i64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Show {
    pub incident: IncidentSummary,
    pub time_to_first_notice_seconds: Option<f64>,
    pub time_to_resolution_seconds: Option<f64>,
    /// Client pauses this incident holds on now.
    pub paused_clients: Vec<Uuid>,
    pub notices: Vec<NoticeView>,
    pub timeline: Vec<TimelineEntry>,
}

type NoticeRow = (
    Uuid,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i32,
    i32,
    i32,
);

pub async fn show(pool: &PgPool, id: Uuid) -> Result<Show, IncidentError> {
    let incident: IncidentSummary = sqlx::query_as(&format!("{SUMMARY} WHERE i.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(IncidentError::NotFound(id))?;
    let seconds = |at: Option<DateTime<Utc>>| {
        at.map(|at| (at - incident.started_at).num_milliseconds() as f64 / 1000.0)
    };
    let (first, resolution) = (
        seconds(incident.first_notice_at),
        seconds(incident.resolved_at),
    );
    let paused_clients: Vec<String> = sqlx::query_scalar(
        "SELECT scope_value FROM comms.pauses WHERE scope = 'client' AND incident_id = $1 ORDER BY 1",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let rows: Vec<NoticeRow> = sqlx::query_as(
        "SELECT id, sequence, purpose, template_base, state, basis, decided_by,
                published_sms, published_email, published_portal
         FROM comms.incident_notices WHERE incident_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut notices = Vec::new();
    for (notice, sequence, purpose, template, state, basis, decided_by, sms, email, portal) in rows
    {
        let messages: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT channel, delivery_state, count(*) FROM comms.messages
             WHERE record_type = 'incident' AND record_id = $1 AND idempotency_key LIKE $2
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(id)
        .bind(format!("incident:{id}:{sequence}:%"))
        .fetch_all(pool)
        .await?;
        let skipped_by_reason: Vec<(String, i64)> = sqlx::query_as(
            "SELECT reason, count(*) FROM comms.incident_skips WHERE notice_id = $1 GROUP BY 1 ORDER BY 1",
        )
        .bind(notice)
        .fetch_all(pool)
        .await?;
        notices.push(NoticeView {
            sequence,
            purpose,
            template,
            state,
            basis,
            decided_by,
            published: serde_json::json!({"sms": sms, "email": email, "portal": portal}),
            messages,
            skipped_by_reason,
        });
    }
    let timeline: Vec<TimelineEntry> = sqlx::query_as(
        "SELECT received_at AS at, 'event ' || event_type || ' #' || sequence AS what, source AS actor,
                jsonb_build_object('severity', severity, 'facts_verified', facts_verified,
                                   'affected', affected) AS detail
         FROM comms.incident_events WHERE incident_id = $1
         UNION ALL
         SELECT occurred_at, what, actor, detail FROM comms.incident_log WHERE incident_id = $1
         ORDER BY 1",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(Show {
        incident,
        time_to_first_notice_seconds: first,
        time_to_resolution_seconds: resolution,
        paused_clients: paused_clients
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect(),
        notices,
        timeline,
    })
}
