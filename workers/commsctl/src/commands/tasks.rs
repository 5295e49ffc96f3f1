//! `commsctl tasks`: the owner tasks the fleet opened (replies to answer, failures to decide,
//! approvals, automatic pauses), and `tasks done` to close one. Closing a reply task records the
//! response time: from the reply's arrival to the owner's answer.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Mark a task done (for a reply: records the response time).
    Done {
        id: Uuid,
        /// Who did it (defaults to $USER).
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct OpenTask {
    id: Uuid,
    owner: String,
    title: String,
    next_action: String,
    reason: Option<String>,
    due_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    message_id: Option<Uuid>,
}

/// Open tasks by owner, oldest first.
pub async fn list(pool: &PgPool, owner: Option<String>, json: bool) -> anyhow::Result<()> {
    let tasks: Vec<OpenTask> = sqlx::query_as(
        "SELECT id, owner, title, next_action, reason, due_at, created_at, message_id FROM comms.tasks
         WHERE state = 'open' AND ($1::text IS NULL OR owner = $1) ORDER BY owner, created_at",
    )
    .bind(owner)
    .fetch_all(pool)
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tasks)?);
        return Ok(());
    }
    if tasks.is_empty() {
        println!("no open tasks");
    }
    let now = Utc::now();
    for t in tasks {
        let age = now - t.created_at;
        let overdue = t.due_at.is_some_and(|d| d < now);
        println!(
            "{}  {:<12} {:>6}m{}  {}: {}",
            t.id,
            t.owner,
            age.num_minutes(),
            if overdue { " OVERDUE" } else { "" },
            t.title,
            t.next_action
        );
    }
    Ok(())
}

pub async fn run(pool: &PgPool, command: TasksCommand, json: bool) -> anyhow::Result<()> {
    let TasksCommand::Done { id, by } = command;
    let by = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "commsctl".into());
    let mut tx = pool.begin().await?;
    let closed: Option<(Option<Uuid>, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE comms.tasks SET state = 'done', done_at = now(), done_by = $2
         WHERE id = $1 AND state = 'open' RETURNING inbound_id, done_at",
    )
    .bind(id)
    .bind(&by)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((inbound, done_at)) = closed else {
        bail!("task {id} is not open (missing or already closed)");
    };
    let mut response_seconds = None;
    if let Some(inbound) = inbound {
        let received: DateTime<Utc> = sqlx::query_scalar(
            "UPDATE internal.inbound_messages SET responded_at = $2 WHERE id = $1 RETURNING received_at",
        )
        .bind(inbound)
        .bind(done_at)
        .fetch_one(&mut *tx)
        .await
        .context("recording the response time")?;
        response_seconds = Some((done_at - received).num_seconds());
    }
    tx.commit().await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "task": id, "done_by": by, "response_seconds": response_seconds })
        );
    } else {
        match response_seconds {
            Some(s) => println!(
                "task {id} done by {by}; replied to after {}m {}s",
                s / 60,
                s % 60
            ),
            None => println!("task {id} done by {by}"),
        }
    }
    Ok(())
}
