//! The home page: is anything paused, how much work waits, what went out and what failed lately,
//! how each provider is doing, and how many dead letters wait. Its live part (`/console/live`) is
//! re-fetched every few seconds by `console.js`, so on-call sees changes without a reload.
//!
//! Every figure is read through an index (a partial or leading-column index per query; no
//! `count(*)` over the message table), so the page stays fast with millions of messages.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use comms_runtime::queues::QueueDepth;
use minijinja::{Value, context};
use serde::Serialize;
use sqlx::PgPool;

use super::pause::{ScopeState, scopes_on};
use super::session::Operator;
use super::view;
use crate::state::GatewayState;

/// The window the home page's rates cover.
pub const RATE_MINUTES: i32 = 15;

/// The providers behind each channel, as the home page reports them.
const PROVIDERS: [(&str, &str); 2] = [("twilio", "sms"), ("sendgrid", "email")];

#[derive(Debug, Serialize)]
struct Rate {
    channel: String,
    sent: i64,
    failed: i64,
}

#[derive(Debug, Serialize)]
struct Provider {
    provider: &'static str,
    channel: &'static str,
    /// The reason of the automatic pause (breaker or freshness watchdog) on the channel, if any.
    breaker_open: Option<String>,
    last_callback: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
struct Overview {
    pauses: Vec<ScopeState>,
    queues: Vec<QueueDepth>,
    rates: Vec<Rate>,
    providers: Vec<Provider>,
    dead_queue: Option<u32>,
    rejected_last_day: i64,
    rate_minutes: i32,
}

/// `GET /console`
pub async fn page(State(state): State<GatewayState>, operator: Operator) -> Response {
    match overview(&state).await {
        Ok(overview) => {
            let live = context! { live => Value::from_serialize(&overview) };
            match view::render("home_live.html", live) {
                Ok(live) => view::page(
                    StatusCode::OK,
                    "Home",
                    Some(&operator),
                    "home.html",
                    context! { live },
                ),
                Err(error) => view::broken("home_live.html", &error),
            }
        }
        Err(error) => {
            tracing::warn!(%error, "console home could not be read");
            view::unavailable(Some(&operator))
        }
    }
}

/// `GET /console/live`: the live part of the home page alone.
pub async fn live(State(state): State<GatewayState>, _operator: Operator) -> Response {
    match overview(&state).await {
        Ok(overview) => view::fragment(
            "home_live.html",
            context! { live => Value::from_serialize(&overview) },
        ),
        Err(error) => {
            tracing::warn!(%error, "console home could not be read");
            view::unavailable(None)
        }
    }
}

async fn overview(state: &GatewayState) -> Result<Overview, sqlx::Error> {
    let inner = state.inner();
    let pool = &inner.pool;
    let mut names: Vec<String> = inner
        .topology
        .work_queues()
        .into_iter()
        .map(|q| q.name)
        .collect();
    let dead_name = inner.topology.dead_queue();
    names.push(dead_name.clone());
    let (pauses, rates, providers, rejected_last_day, mut queues) = tokio::try_join!(
        scopes_on(pool),
        rates(pool),
        providers(pool),
        rejected_last_day(pool),
        async { Ok(inner.broker.queue_depths(&names).await) },
    )?;
    let dead_queue = queues
        .iter()
        .position(|q| q.queue == dead_name)
        .and_then(|i| queues.remove(i).messages);
    Ok(Overview {
        pauses,
        queues,
        rates,
        providers,
        dead_queue,
        rejected_last_day,
        rate_minutes: RATE_MINUTES,
    })
}

/// Sent (dispatched) and failed per channel in the last [`RATE_MINUTES`].
async fn rates(pool: &PgPool) -> Result<Vec<Rate>, sqlx::Error> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "WITH sent AS (
             SELECT channel, count(*) AS n FROM comms.messages
             WHERE dispatched_at IS NOT NULL AND dispatched_at > now() - make_interval(mins => $1)
             GROUP BY channel),
         failed AS (
             SELECT channel, count(*) AS n FROM comms.messages
             WHERE delivery_state IN ('failed', 'undelivered')
               AND updated_at > now() - make_interval(mins => $1)
             GROUP BY channel)
         SELECT c.channel, COALESCE(s.n, 0), COALESCE(f.n, 0)
         FROM (VALUES ('sms'), ('email'), ('portal')) AS c (channel)
         LEFT JOIN sent s USING (channel) LEFT JOIN failed f USING (channel)
         ORDER BY c.channel",
    )
    .bind(RATE_MINUTES)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(channel, sent, failed)| Rate {
            channel,
            sent,
            failed,
        })
        .collect())
}

async fn providers(pool: &PgPool) -> Result<Vec<Provider>, sqlx::Error> {
    let mut out = Vec::new();
    for (provider, channel) in PROVIDERS {
        let (breaker_open, last_callback): (Option<String>, Option<DateTime<Utc>>) =
            sqlx::query_as(
                "SELECT (SELECT reason FROM comms.pauses
                         WHERE scope = 'channel' AND scope_value = $1 AND automatic
                           AND (expires_at IS NULL OR expires_at > now())),
                        (SELECT max(received_at) FROM comms.delivery_callbacks WHERE channel = $1)",
            )
            .bind(channel)
            .fetch_one(pool)
            .await?;
        out.push(Provider {
            provider,
            channel,
            breaker_open,
            last_callback,
        });
    }
    Ok(out)
}

/// Inputs refused in the last day (`internal.rejected_input`, by its time index).
async fn rejected_last_day(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM internal.rejected_input WHERE received_at > now() - interval '1 day'",
    )
    .fetch_one(pool)
    .await
}
