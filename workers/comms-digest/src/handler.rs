//! One handler for `comms.digest.jobs`, by routing key: `digest.report` builds (or carries on) a
//! period's digest, `digest.batch` collects an event into its bucket. Anything else, and any job
//! that breaks the contract, is rejected with its reason (kept in `internal.rejected_input` and
//! `comms.dead`); database and broker trouble is retried.

use std::sync::Arc;

use chrono_tz::Tz;
use comms_runtime::amqp::Publisher;
use comms_runtime::clock::Clock;
use comms_runtime::runtime::{Handler, Incoming, Outcome, Runtime};
use tokio::sync::Mutex;

use crate::batch::collect::{Collected, collect};
use crate::batch::flush;
use crate::job::{self, BatchEvent, ReportJob};
use crate::metrics::digest as metrics;
use crate::report::build::{BuildError, build};

pub struct DigestHandler {
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    default_zone: Tz,
    publisher: Mutex<Option<(lapin::Connection, Publisher)>>,
}

impl DigestHandler {
    pub fn new(runtime: Runtime, clock: Arc<dyn Clock>) -> Self {
        let default_zone = runtime
            .settings
            .sender
            .default_time_zone
            .parse()
            .unwrap_or(Tz::UTC);
        Self {
            runtime,
            clock,
            default_zone,
            publisher: Mutex::new(None),
        }
    }

    async fn report(&self, message: &Incoming) -> Outcome {
        let job: ReportJob = match message.json() {
            Ok(job) => job,
            Err(reason) => return Outcome::reject(reason),
        };
        if let Err(reason) = job.check() {
            return Outcome::reject(reason);
        }
        let mut guard = self.publisher.lock().await;
        if guard.as_ref().is_none_or(|(_, p)| !p.is_usable()) {
            match flush::connect(&self.runtime).await {
                Ok(opened) => *guard = Some(opened),
                Err(error) => return Outcome::retry(format!("broker: {error}")),
            }
        }
        let Some((_, publisher)) = guard.as_ref() else {
            return Outcome::retry("broker: no publisher");
        };
        match build(&self.runtime, publisher, &job, self.clock.now()).await {
            Ok(built) => {
                metrics().builds.with_label_values(&[built.label()]).inc();
                tracing::info!(period.id = %job.report_period_id, outcome = built.label(), "digest built");
                Outcome::Ack
            }
            Err(BuildError::UnknownPeriod(id)) => {
                Outcome::reject(format!("report_period_id: no report period {id}"))
            }
            Err(error) => {
                *guard = None;
                Outcome::retry(error.to_string())
            }
        }
    }

    async fn batch(&self, message: &Incoming) -> Outcome {
        let event: BatchEvent = match message.json() {
            Ok(event) => event,
            Err(reason) => return Outcome::reject(reason),
        };
        let window = match event.check() {
            Ok(window) => window,
            Err(reason) => return Outcome::reject(reason),
        };
        let now = self.clock.now();
        match collect(&self.runtime.pool, &event, window, now, self.default_zone).await {
            Ok(collected) => {
                let label = match collected {
                    Collected::Added { .. } => "added",
                    Collected::Duplicate => "duplicate",
                };
                metrics().collected.with_label_values(&[label]).inc();
                Outcome::Ack
            }
            Err(error) => comms_runtime::db_error::outcome(&error),
        }
    }
}

impl Handler for DigestHandler {
    async fn handle(&self, message: &Incoming) -> Outcome {
        match message.routing_key.as_str() {
            job::REPORT => self.report(message).await,
            job::BATCH => self.batch(message).await,
            other => Outcome::reject(format!(
                "routing key {other:?}: expected {} or {}",
                job::REPORT,
                job::BATCH
            )),
        }
    }
}
