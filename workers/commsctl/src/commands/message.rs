//! `commsctl message <id or idempotency key>`: one message and its whole timeline, its recipient
//! masked. `--reveal` shows the full address and content, and records who read it and why
//! (`commsctl audit access`, docs/privacy.md).

use anyhow::Context;
use comms_domain::privacy::access::{self, Access, Revealed, Via};
use comms_domain::timeline;
use sqlx::PgPool;

/// How the message is read: masked, or revealed by someone for a reason.
#[derive(Debug, Clone, Default)]
pub struct Reveal {
    pub reveal: bool,
    pub why: Option<String>,
    pub who: String,
}

pub async fn run(pool: &PgPool, reference: &str, how: Reveal, json: bool) -> anyhow::Result<()> {
    let view = timeline::view(pool, reference)
        .await?
        .with_context(|| format!("no message with id or idempotency key {reference}"))?;
    let revealed: Option<Revealed> = if how.reveal {
        anyhow::ensure!(
            !how.who.trim().is_empty(),
            "--reveal needs to know who reads: set --as or $USER"
        );
        let access = Access {
            who: how.who.trim(),
            via: Via::Commsctl,
            what: "message recipient and content",
            message_id: None,
            contact_id: None,
            why: how.why.as_deref(),
        };
        access::reveal(pool, view.message.id, &access).await?
    } else {
        None
    };
    if json {
        let mut out = serde_json::to_value(&view)?;
        if let Some(revealed) = &revealed {
            out["revealed"] = serde_json::to_value(revealed)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let m = &view.message;
    println!("message   {} ({})", m.id, m.idempotency_key);
    match &revealed {
        Some(r) => {
            println!(
                "to        {} ({}, contact {})",
                r.recipient_address,
                r.contact_name.as_deref().unwrap_or("no name"),
                r.contact_id
            );
            if let Some(subject) = &r.subject {
                println!("subject   {subject}");
            }
            match &r.body {
                Some(body) => println!("body      {body}"),
                None => println!("body      (none kept)"),
            }
        }
        None => println!(
            "to        {} (contact {}; --reveal --why TEXT shows it, recorded)",
            view.recipient, view.contact_id
        ),
    }
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
