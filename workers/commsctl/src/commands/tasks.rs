//! `commsctl tasks`: the owner tasks the fleet opened (replies to answer, failures to decide,
//! approvals, automatic pauses), and `tasks done` to close one. Closing a reply task records the
//! response time: from the reply's arrival to the owner's answer.

use chrono::Utc;
use clap::Subcommand;
use comms_domain::tasks;
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

/// Open tasks by owner, oldest first.
pub async fn list(pool: &PgPool, owner: Option<String>, json: bool) -> anyhow::Result<()> {
    let tasks = tasks::open(pool, owner.as_deref()).await?;
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
    let closed = tasks::close(pool, id, &by).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "task": id, "done_by": closed.done_by, "response_seconds": closed.response_seconds })
        );
    } else {
        match closed.response_seconds {
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
