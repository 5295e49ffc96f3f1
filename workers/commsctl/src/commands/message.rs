//! `commsctl message <id or idempotency key>`: one message and its whole timeline.

use anyhow::Context;
use comms_shared::timeline;
use sqlx::PgPool;

pub async fn run(pool: &PgPool, reference: &str, json: bool) -> anyhow::Result<()> {
    let view = timeline::view(pool, reference)
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
