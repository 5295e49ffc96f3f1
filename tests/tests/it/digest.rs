//! The digest worker (docs/digests.md): report digests and notification batching, against the
//! real broker and database, with a clock the test controls.

pub(crate) mod api;
mod batching;
mod reports;
mod schedule;
mod sending;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use comms_runtime::clock::{Clock, ManualClock};
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::TestEnv;
use uuid::Uuid;

/// A running `comms-digest` on the test's namespace, on `clock`.
pub struct Worker {
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    pub fn start(env: &TestEnv, clock: &ManualClock) -> Self {
        let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
        let shutdown = Shutdown::new();
        let clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let task = tokio::spawn(comms_digest::run_with_clock(
            runtime,
            clock,
            shutdown.clone(),
        ));
        Self { shutdown, task }
    }

    /// Kills the worker where it stands (no drain, no goodbye), like `kill -9`.
    pub fn kill(self) {
        self.task.abort();
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("a test time")
}

/// A client contact with an email address (and, if `portal`, a portal address).
pub async fn contact(env: &TestEnv, client: Option<Uuid>, tz: Option<&str>, portal: bool) -> Uuid {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.contacts (name, time_zone, client_id) VALUES ('Dana', $1, $2) RETURNING id",
    )
    .bind(tz)
    .bind(client)
    .fetch_one(&env.pool)
    .await
    .expect("contact");
    let mut channels = vec![("email", format!("{id}@example.com"))];
    if portal {
        channels.push(("portal", format!("portal:{id}")));
    }
    for (channel, address) in channels {
        sqlx::query(
            "INSERT INTO comms.contact_channels (contact_id, channel, address, consent_state)
             VALUES ($1, $2, $3, 'express')",
        )
        .bind(id)
        .bind(channel)
        .bind(address)
        .execute(&env.pool)
        .await
        .expect("channel");
    }
    id
}

/// The send requests waiting on `comms.send.<channel>` (taken off the queue).
pub async fn sends(env: &TestEnv, channel: &str) -> Vec<serde_json::Value> {
    env.drain(&env.topology.send_queue(channel).name)
        .await
        .into_iter()
        .map(|(body, _)| serde_json::from_slice(&body).expect("a JSON send request"))
        .collect()
}
