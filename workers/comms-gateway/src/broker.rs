//! The gateway's one broker link: a confirm-mode publisher opened lazily and reopened after loss.
//!
//! The gateway must answer every webhook quickly and truthfully: 2xx only once the broker has
//! confirmed the payload, 503 otherwise so the provider retries. A request that finds no usable
//! link connects (declaring the topology, so the queues the payload is routed to exist), and any
//! publish failure drops the link so the request after it starts fresh. Connecting is bounded by
//! a timeout, so a broker that does not answer makes the gateway answer 503, not hang.
//!
//! Readiness follows the same link ([`BrokerLink::keep_ready`]): a gateway that would answer
//! every webhook 503 must not be sent traffic, so a load balancer has to see it not ready. A
//! watcher connects at start, checks the link every second, reconnects after a loss (with capped
//! backoff) and reports the readiness check `gateway.broker`; requests never wait for it.

use std::sync::LazyLock;
use std::time::Duration;

use comms_runtime::amqp::{self, Outgoing, PublishError, Publisher};
use comms_runtime::health::Health;
use comms_runtime::queues::QueueDepth;
use comms_runtime::settings::AmqpSettings;
use comms_runtime::shutdown::Shutdown;
use comms_runtime::topology::Topology;
use prometheus::IntGauge;
use tokio::sync::Mutex;

/// How long connecting (TCP, AMQP handshake, confirm mode, topology) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the readiness watcher looks at a healthy link (a local status read, no traffic).
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// The longest the watcher waits between two reconnection attempts.
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The readiness check the broker link reports (`/readyz` lists it under `checks`).
pub const READY_CHECK: &str = "gateway.broker";

/// Why a payload could not be handed to the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot connect to the broker: {0}")]
    Connect(#[from] lapin::Error),
    #[error("the broker did not answer within {0:?}")]
    ConnectTimeout(Duration),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

fn connected_gauge() -> &'static IntGauge {
    static GAUGE: LazyLock<IntGauge> = LazyLock::new(|| {
        comms_runtime::metrics::gauge(
            "comms_gateway_broker_connected",
            "1 while the gateway holds a usable broker connection",
            &[],
        )
        .with_label_values::<&str>(&[])
    });
    &GAUGE
}

struct Live {
    connection: lapin::Connection,
    publisher: Publisher,
    /// Tells links apart, so a late failure on an old link never drops a newer one.
    generation: u64,
}

/// A publisher that connects on first use and after every failure.
pub struct BrokerLink {
    settings: AmqpSettings,
    topology: Topology,
    live: Mutex<Option<Live>>,
    generations: std::sync::atomic::AtomicU64,
}

impl BrokerLink {
    pub fn new(settings: AmqpSettings, topology: Topology) -> Self {
        Self {
            settings,
            topology,
            live: Mutex::new(None),
            generations: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Publishes `message` and waits for the broker's confirm.
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<(), BrokerError> {
        let (generation, publisher) = self.publisher().await?;
        match publisher.publish(message).await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.forget(generation).await;
                Err(error.into())
            }
        }
    }

    /// The link's publisher for several confirmed publishes (and `basic.get`s) in a row, e.g. a
    /// dead-letter replay; connecting first if needed.
    pub async fn current(&self) -> Result<Publisher, BrokerError> {
        Ok(self.publisher().await?.1)
    }

    /// The current publisher, connecting first if there is none or it broke.
    async fn publisher(&self) -> Result<(u64, Publisher), BrokerError> {
        let mut live = self.live.lock().await;
        if let Some(current) = live.as_ref()
            && current.publisher.is_usable()
            && current.connection.status().connected()
        {
            return Ok((current.generation, current.publisher.clone()));
        }
        if let Some(stale) = live.take() {
            connected_gauge().set(0);
            close_in_background(stale);
        }
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| BrokerError::ConnectTimeout(CONNECT_TIMEOUT))??;
        let found = (connected.generation, connected.publisher.clone());
        *live = Some(connected);
        connected_gauge().set(1);
        tracing::info!("gateway connected to the broker");
        Ok(found)
    }

    async fn connect(&self) -> Result<Live, lapin::Error> {
        let connection = amqp::connect(&self.settings, "comms-gateway").await?;
        let publisher = Publisher::open(&connection).await?;
        self.topology.declare(publisher.channel()).await?;
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Live {
            connection,
            publisher,
            generation,
        })
    }

    /// The depth and consumer count of each of `queues`, on the link's connection (connecting
    /// first if needed); every queue is unknown when the broker cannot be reached. The queues are
    /// the topology's own, declared on connect, so one channel serves them all.
    pub async fn queue_depths(&self, queues: &[String]) -> Vec<QueueDepth> {
        let unknown = || queues.iter().map(|q| QueueDepth::unknown(q)).collect();
        if self.publisher().await.is_err() {
            return unknown();
        }
        let channel = {
            let live = self.live.lock().await;
            match live.as_ref() {
                Some(live) => live.connection.create_channel().await.ok(),
                None => None,
            }
        };
        let Some(channel) = channel else {
            return unknown();
        };
        let mut depths = Vec::with_capacity(queues.len());
        for queue in queues {
            depths.push(comms_runtime::queues::depth(&channel, queue).await);
        }
        let _ = channel.close(200, "done".into()).await;
        depths
    }

    /// Keeps readiness check [`READY_CHECK`] true exactly while the link is usable, connecting and
    /// reconnecting as needed, until `shutdown`. Not ready until the first connection.
    pub async fn keep_ready(&self, health: &Health, shutdown: &Shutdown) {
        let mut wait = WATCH_EVERY;
        let mut was_ready = None;
        loop {
            let checked = tokio::select! {
                () = shutdown.cancelled() => return,
                checked = self.publisher() => checked,
            };
            let ready = checked.is_ok();
            match checked {
                Ok(_) => health.set(READY_CHECK, true, "connected to the broker"),
                Err(error) => {
                    if was_ready != Some(false) {
                        tracing::warn!(%error, "gateway not ready: the broker is unreachable");
                    }
                    health.set(READY_CHECK, false, format!("broker unreachable: {error}"));
                }
            }
            if ready && was_ready == Some(false) {
                tracing::info!("gateway ready again: the broker is reachable");
            }
            was_ready = Some(ready);
            wait = if ready {
                WATCH_EVERY
            } else {
                (wait * 2).min(WATCH_BACKOFF_MAX)
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Closes the link, if open (at shutdown, after the last request finished).
    pub async fn close(&self) {
        if let Some(live) = self.live.lock().await.take() {
            connected_gauge().set(0);
            let _ = live.connection.close(200, "shutdown".into()).await;
        }
    }

    /// Drops link `generation` (unless another request already replaced it).
    async fn forget(&self, generation: u64) {
        let mut live = self.live.lock().await;
        let same = live.as_ref().is_some_and(|l| l.generation == generation);
        if same && let Some(stale) = live.take() {
            connected_gauge().set(0);
            tracing::warn!(
                "broker link dropped after a failed publish; the next request reconnects"
            );
            close_in_background(stale);
        }
    }
}

fn close_in_background(stale: Live) {
    tokio::spawn(async move {
        let _ = stale.connection.close(200, "reconnecting".into()).await;
    });
}
