//! The shared consumer runtime: what every worker needs to consume a queue safely.
//!
//! A worker implements [`Handler`] — what one message means — and returns an [`Outcome`] that
//! carries the retry policy. The runtime does the rest: connect and declare the topology, set
//! prefetch, bound concurrency, ack only after the handler returned (handlers commit before they
//! return), carry retries in the broker's delay tiers, dead-letter poison messages with their
//! reason into `comms.dead` and `internal.rejected_input`, survive handler panics, reconnect after
//! an outage with capped jittered backoff, and drain in-flight work on shutdown.

mod consumer;
pub mod reconnect;
pub mod rounds;
mod settle;
mod standalone;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lapin::types::FieldTable;
use sqlx::PgPool;

use crate::health::Health;
use crate::settings::Settings;
use crate::topology::{Topology, WorkQueue};

pub use consumer::run_consumer;
pub use settle::headers_to_json;
pub use settle::retry_delay;
pub use standalone::standalone;

/// Header carrying how many broker retries a message has already had.
pub const RETRY_HEADER: &str = "x-comms-retry";
/// Header carrying why a message was retried or dead-lettered.
pub const REASON_HEADER: &str = "x-comms-reason";
/// Header naming the queue a dead-lettered message came from.
pub const ORIGIN_HEADER: &str = "x-comms-origin-queue";
/// Header keeping the routing key a message was published with across a retry hop: a delay tier
/// hands the message back under its own key (`<tier>.<queue>`), and a handler that reads the
/// routing key (an inbound reply's provider, an incident event's type) must see the original.
pub const ROUTING_KEY_HEADER: &str = "x-comms-routing-key";

/// What a handler decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; every effect is committed.
    Ack,
    /// A transient failure: try again later, after `after` if the cause said how long
    /// (a provider's `Retry-After`), else after the exponential schedule.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// A permanent failure: the message is kept in `comms.dead` and the rejected table.
    Reject { reason: String },
    /// Not now, and not a failure (a quiet-hours window, a `send_after`): park the message in
    /// the delay tiers for about `after` without counting a retry. Delays longer than the largest
    /// tier take several hops; the handler decides again each time it comes back.
    Defer { after: Duration, reason: String },
}

impl Outcome {
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            reason: reason.into(),
            after: None,
        }
    }
    pub fn reject(reason: impl Into<String>) -> Self {
        Self::Reject {
            reason: reason.into(),
        }
    }
}

/// One delivered message, as a handler sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub queue: String,
    /// The routing key the message was published with, also after retry hops.
    pub routing_key: String,
    pub body: Vec<u8>,
    pub headers: FieldTable,
    pub message_id: Option<String>,
    /// The broker delivered this before and it was not acked (a consumer died).
    pub redelivered: bool,
    /// Broker-carried retries already behind this message (0 on the first delivery).
    pub retry_attempt: u32,
}

impl Incoming {
    /// Decodes the body as JSON, with an error that names the field and says what was wrong.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let mut body = serde_json::Deserializer::from_slice(&self.body);
        let value = serde_path_to_error::deserialize(&mut body).map_err(|e| {
            let path = e.path().to_string();
            match path.as_str() {
                "." => format!("body is not the expected JSON: {}", e.inner()),
                field => format!("body is not the expected JSON: {field}: {}", e.inner()),
            }
        })?;
        // Anything after the value (a second object, garbage) is refused, as before.
        body.end()
            .map_err(|e| format!("body is not the expected JSON: {e}"))?;
        Ok(value)
    }
}

/// What one worker does with one message. Handlers must be idempotent: at-least-once delivery
/// means the same message can arrive again after a crash between commit and ack.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, message: &Incoming) -> impl Future<Output = Outcome> + Send;

    /// Whether this handler decides deliveries in groups ([`Handler::handle_group`]); the runtime
    /// then hands it up to `consumer.group_max` deliveries that have already arrived at once.
    fn handles_groups(&self) -> bool {
        false
    }

    /// Decides a group of deliveries, one outcome per delivery in the same order. A handler that
    /// groups does its database work per group (one round trip instead of one per message) and
    /// still commits before it returns: every outcome is settled only after this returns.
    /// If it panics, the runtime decides each delivery of the group on its own with
    /// [`Handler::handle`], so one poison message cannot take its neighbours with it.
    fn handle_group(&self, messages: &[Incoming]) -> impl Future<Output = Vec<Outcome>> + Send {
        futures_util::future::join_all(messages.iter().map(|message| self.handle(message)))
    }
}

/// What every consumer of a process shares.
#[derive(Clone)]
pub struct Runtime {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    pub topology: Topology,
    pub health: Health,
}

/// The readiness check of the consumer of `queue` (`consumer:<queue>` in `/readyz`).
pub fn consumer_check(queue: &str) -> String {
    format!("consumer:{queue}")
}

impl Runtime {
    /// Declares that this process will consume `queues`: it is not ready until each of their
    /// consumers is attached. Workers call this when they are created, before their process
    /// serves `/readyz`, so readiness can never run ahead of the broker.
    pub fn expect_consumers<'q>(&self, queues: impl IntoIterator<Item = &'q WorkQueue>) {
        for queue in queues {
            self.health
                .expect(&consumer_check(&queue.name), "not attached yet");
        }
    }

    pub fn new(settings: Arc<Settings>, pool: PgPool) -> Self {
        let topology = Topology::new(settings.amqp.namespace.clone());
        let health = Health::new(pool.clone());
        Self {
            settings,
            pool,
            topology,
            health,
        }
    }
}
