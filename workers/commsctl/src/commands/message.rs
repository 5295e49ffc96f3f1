//! `commsctl message <id or idempotency key>`: one message and its whole timeline.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct MessageSummary {
    pub id: Uuid,
    pub idempotency_key: String,
    pub channel: String,
    pub kind: String,
    pub owner: String,
    pub source: String,
    pub record_type: String,
    pub record_id: Uuid,
    pub delivery_state: String,
    pub reply_state: String,
    pub failure_reason: Option<String>,
    pub next_action: Option<String>,
    pub attempt_count: i32,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub sms_encoding: Option<String>,
    pub sms_segments: Option<i32>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TimelineEntry {
    pub occurred_at: DateTime<Utc>,
    pub event_type: String,
    pub actor: String,
    pub reason: Option<String>,
    pub recovery_rule: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MessageView {
    pub message: MessageSummary,
    pub timeline: Vec<TimelineEntry>,
}

/// Finds a message by id or idempotency key, with its events in order.
pub async fn view(pool: &PgPool, reference: &str) -> anyhow::Result<Option<MessageView>> {
    let id = reference.parse::<Uuid>().ok();
    let message: Option<MessageSummary> = sqlx::query_as(
        "SELECT id, idempotency_key, channel, kind, owner, source, record_type, record_id,
                delivery_state, reply_state, failure_reason, next_action, attempt_count, provider,
                provider_message_id, sms_encoding, sms_segments, created_at
         FROM comms.messages WHERE id = $1 OR idempotency_key = $2",
    )
    .bind(id)
    .bind(reference)
    .fetch_optional(pool)
    .await?;
    let Some(message) = message else {
        return Ok(None);
    };
    let timeline = sqlx::query_as(
        "SELECT occurred_at, event_type, actor, reason, recovery_rule FROM comms.message_events
         WHERE message_id = $1 ORDER BY id",
    )
    .bind(message.id)
    .fetch_all(pool)
    .await?;
    Ok(Some(MessageView { message, timeline }))
}

pub async fn run(pool: &PgPool, reference: &str, json: bool) -> anyhow::Result<()> {
    let view = view(pool, reference)
        .await?
        .with_context(|| format!("no message with id or idempotency key {reference}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    let m = &view.message;
    println!("message   {} ({})", m.id, m.idempotency_key);
    println!(
        "what      {} {} for {} {}",
        m.channel, m.kind, m.record_type, m.record_id
    );
    println!("owner     {} (source {})", m.owner, m.source);
    println!(
        "state     {} · reply {} · attempts {}",
        m.delivery_state, m.reply_state, m.attempt_count
    );
    if let Some(reason) = &m.failure_reason {
        println!("reason    {reason}");
    }
    if let Some(next) = &m.next_action {
        println!("next      {next}");
    }
    if let (Some(p), Some(id)) = (&m.provider, &m.provider_message_id) {
        println!("provider  {p} {id}");
    }
    if let (Some(e), Some(s)) = (&m.sms_encoding, m.sms_segments) {
        println!("sms       {e}, {s} segment(s)");
    }
    println!("\ntimeline");
    for e in &view.timeline {
        println!(
            "  {}  {:<18} {:<14} {}",
            e.occurred_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.event_type,
            e.actor,
            e.reason.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
