//! `commsctl webhooks`: an app's endpoints for lifecycle events (docs/upstream.md).
//!
//! `add` checks the URL (no loopback, private or link-local address unless
//! `events.webhook_allow_private`) and prints the signing secret once; `deliveries` shows what was
//! sent where with its attempts; `replay` sends deliveries again; `enable` turns a webhook that
//! was disabled after repeated failures back on; `remove` stops it for good.

use anyhow::{Context, bail};
use clap::Subcommand;
use comms_domain::events::WEBHOOK_REPLAY_HEADER as REPLAY_HEADER;
use comms_domain::webhooks::{NewWebhook, register};
use comms_runtime::amqp::Outgoing;
use comms_runtime::settings::Settings;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register an endpoint and print its signing secret (shown once).
    Add {
        /// The app whose events it receives (the API key's name, or the `source` of AMQP requests).
        #[arg(long, required_unless_present = "all_apps")]
        app: Option<String>,
        /// Receive every app's events (an on-call or CRM integration).
        #[arg(long, conflicts_with = "app")]
        all_apps: bool,
        /// Where events are POSTed (http:// or https://).
        #[arg(long)]
        url: String,
        /// Event types, comma-separated: message.delivered,message.failed,task.opened,… or *.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// Who gets a task when the endpoint keeps failing (defaults to $USER).
        #[arg(long)]
        owner: Option<String>,
    },
    /// List webhooks (never their secrets).
    List,
    /// Deliveries of one app's webhooks (or one webhook's), newest first.
    Deliveries {
        #[arg(long, required_unless_present = "webhook")]
        app: Option<String>,
        #[arg(long)]
        webhook: Option<Uuid>,
        /// Only deliveries in this state.
        #[arg(long, value_parser = ["pending", "delivered", "failed"])]
        state: Option<String>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
    },
    /// Send deliveries again: one by id, or every failed one of a webhook.
    Replay {
        #[arg(long, required_unless_present = "webhook")]
        delivery: Option<i64>,
        /// With --failed: every failed delivery of this webhook.
        #[arg(long, requires = "failed")]
        webhook: Option<Uuid>,
        #[arg(long)]
        failed: bool,
    },
    /// Turn a disabled webhook back on (its failure count starts again).
    Enable { id: Uuid },
    /// Stop a webhook for good.
    Remove { id: Uuid },
}

/// One delivery, as `deliveries` shows it.
#[derive(Debug, serde::Serialize, sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    webhook_id: Uuid,
    event_id: Uuid,
    event_type: String,
    state: String,
    attempts: i32,
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    command: WebhooksCommand,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::Add {
            app,
            all_apps: _,
            url,
            events,
            owner,
        } => {
            let owner = owner
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "on-call".into());
            let new = NewWebhook {
                app,
                url,
                events,
                owner,
            };
            let registered = register(pool, &new, settings.events.webhook_allow_private)
                .await
                .context("the webhook was not registered")?;
            if json {
                println!(
                    "{}",
                    json!({ "id": registered.id, "secret": registered.secret })
                );
            } else {
                println!("webhook {} registered. Its signing secret:", registered.id);
                println!();
                println!("    {}", registered.secret);
                println!();
                println!(
                    "Store it now: it is shown only once. Verify deliveries as docs/upstream.md shows."
                );
            }
        }
        WebhooksCommand::List => {
            let all = comms_domain::webhooks::list(pool).await?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else if all.is_empty() {
                println!(
                    "no webhooks (add one: commsctl webhooks add --app NAME --url URL --events message.delivered)"
                );
            } else {
                for hook in all {
                    let app = hook.app.unwrap_or_else(|| "(every app)".into());
                    println!(
                        "{}  {:<8} {app}  {}  [{}]  owner {}, {} failures in a row{}",
                        hook.id,
                        hook.state,
                        hook.url,
                        hook.events.join(","),
                        hook.owner,
                        hook.consecutive_failures,
                        hook.disabled_reason
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        WebhooksCommand::Deliveries {
            app,
            webhook,
            state,
            limit,
        } => {
            let rows: Vec<DeliveryRow> = sqlx::query_as(
                "SELECT d.id, d.webhook_id, d.event_id, d.event_type, d.state, d.attempts,
                        d.last_status, d.last_error, d.created_at
                 FROM comms.webhook_deliveries d JOIN comms.webhooks w ON w.id = d.webhook_id
                 WHERE ($1::text IS NULL OR w.app = $1) AND ($2::uuid IS NULL OR w.id = $2)
                   AND ($3::text IS NULL OR d.state = $3)
                 ORDER BY d.id DESC LIMIT $4",
            )
            .bind(&app)
            .bind(webhook)
            .bind(&state)
            .bind(limit.clamp(1, 1000))
            .fetch_all(pool)
            .await?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                for d in rows {
                    let last = d
                        .last_error
                        .or(d.last_status.map(|s| format!("answered {s}")))
                        .unwrap_or_default();
                    println!(
                        "{:>6}  {}  {:<9} {:<22} webhook {} event {}  {} attempt(s) {last}",
                        d.id,
                        d.created_at,
                        d.state,
                        d.event_type,
                        d.webhook_id,
                        d.event_id,
                        d.attempts
                    );
                }
            }
        }
        WebhooksCommand::Replay {
            delivery,
            webhook,
            failed: _,
        } => {
            let rows: Vec<(i64, Uuid, serde_json::Value)> = sqlx::query_as(
                "SELECT id, webhook_id, payload FROM comms.webhook_deliveries
                 WHERE ($1::bigint IS NOT NULL AND id = $1)
                    OR ($1::bigint IS NULL AND webhook_id = $2 AND state = 'failed')
                 ORDER BY id",
            )
            .bind(delivery)
            .bind(webhook)
            .fetch_all(pool)
            .await?;
            if rows.is_empty() {
                bail!("no such delivery to replay");
            }
            replay(settings, &rows).await?;
            if json {
                println!("{}", json!({ "replayed": rows.len() }));
            } else {
                println!(
                    "{} deliver{} queued again",
                    rows.len(),
                    if rows.len() == 1 { "y" } else { "ies" }
                );
            }
        }
        WebhooksCommand::Enable { id } => {
            let changed = sqlx::query(
                "UPDATE comms.webhooks SET state = 'active', consecutive_failures = 0,
                     disabled_at = NULL, disabled_reason = NULL
                 WHERE id = $1 AND state = 'disabled'",
            )
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected();
            if changed == 0 {
                bail!("webhook {id} is not disabled");
            }
            println!(
                "webhook {id} enabled; replay what it missed: commsctl webhooks replay --webhook {id} --failed"
            );
        }
        WebhooksCommand::Remove { id } => {
            let changed = sqlx::query(
                "UPDATE comms.webhooks SET state = 'removed' WHERE id = $1 AND state <> 'removed'",
            )
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected();
            if changed == 0 {
                bail!("no webhook {id}");
            }
            println!("webhook {id} removed");
        }
    }
    Ok(())
}

/// Publishes each delivery's event straight to `comms.webhooks`, naming its one webhook.
async fn replay(
    settings: &Settings,
    rows: &[(i64, Uuid, serde_json::Value)],
) -> anyhow::Result<()> {
    let (connection, publisher, topology) = super::send::broker(settings).await?;
    let queue = topology.webhooks_queue().name;
    for (_, webhook, payload) in rows {
        let body = serde_json::to_vec(payload)?;
        let mut headers = FieldTable::default();
        headers.insert(
            REPLAY_HEADER.into(),
            AMQPValue::LongString(webhook.to_string().into()),
        );
        publisher
            .publish(Outgoing {
                exchange: "",
                routing_key: &queue,
                body: &body,
                headers,
                ..Outgoing::default()
            })
            .await
            .context("the broker did not accept the replay")?;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}
