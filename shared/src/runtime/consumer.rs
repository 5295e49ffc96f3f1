//! The consume loop of one queue, and the supervisor that rebuilds it after any failure.
//!
//! lapin's own recovery does not restore QoS and drops acks of pre-recovery deliveries, so we do
//! not rely on it: any broker or channel error ends the session, and the supervisor opens a new
//! connection, re-declares the topology, sets prefetch again and consumes again, after a capped,
//! jittered backoff. Unacked deliveries of a dead session return to the queue by themselves.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::settle::settle;
use super::{Handler, Incoming, Outcome, RETRY_HEADER, Runtime};
use crate::amqp::{self, Publisher, header_u32};
use crate::shutdown::Shutdown;
use crate::topology::WorkQueue;

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker cancelled or closed the consumer")]
    StreamEnded,
}

/// Consumes `queue` with `handler` until `shutdown`, reconnecting after every failure.
pub async fn run_consumer<H: Handler>(
    runtime: Runtime,
    queue: WorkQueue,
    handler: Arc<H>,
    shutdown: Shutdown,
) {
    let metrics = crate::metrics::consumer();
    let check = format!("consumer:{}", queue.name);
    let mut backoff = new_backoff();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        runtime.health.set(&check, false, "connecting");
        let started = Instant::now();
        match session(&runtime, &queue, handler.clone(), &shutdown).await {
            Ok(()) => break,
            Err(error) => {
                metrics.connected.with_label_values(&[&queue.name]).set(0);
                metrics.reconnects.with_label_values(&[&queue.name]).inc();
                runtime
                    .health
                    .set(&check, false, format!("reconnecting: {error}"));
                // A session that ran for a while was healthy: start the backoff over.
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = new_backoff();
                }
                let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                tracing::warn!(queue.name = %queue.name, %error, retry.in_ms = delay.as_millis() as u64, "consumer lost; reconnecting");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    metrics.connected.with_label_values(&[&queue.name]).set(0);
    runtime.health.set(&check, false, "stopped");
    tracing::info!(queue.name = %queue.name, "consumer stopped");
}

fn new_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn session<H: Handler>(
    runtime: &Runtime,
    queue: &WorkQueue,
    handler: Arc<H>,
    shutdown: &Shutdown,
) -> Result<(), SessionError> {
    let settings = &runtime.settings.consumer;
    let connection = amqp::connect(&runtime.settings.amqp, &queue.name).await?;
    let publisher = Publisher::open(&connection).await?;
    runtime.topology.declare(publisher.channel()).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let tag = consumer.tag();
    let metrics = crate::metrics::consumer();
    metrics.connected.with_label_values(&[&queue.name]).set(1);
    runtime
        .health
        .set(&format!("consumer:{}", queue.name), true, "consuming");
    tracing::info!(queue.name = %queue.name, prefetch = settings.prefetch, concurrency = settings.concurrency, "consuming");

    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let mut in_flight = JoinSet::new();
    let ended = loop {
        while in_flight.try_join_next().is_some() {}
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => break Err(SessionError::Broker(error)),
            None => break Err(SessionError::StreamEnded),
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break Err(SessionError::StreamEnded);
        };
        let task = process(
            runtime.clone(),
            publisher.clone(),
            handler.clone(),
            queue.name.clone(),
            delivery,
        );
        in_flight.spawn(async move {
            task.await;
            drop(permit);
        });
    };

    if ended.is_ok() {
        // Stop new deliveries, give in-flight messages the grace period, then return the rest.
        let _ = channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await;
        let drained = tokio::time::timeout(settings.shutdown_grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(queue.name = %queue.name, unfinished = in_flight.len(), "grace period over; unfinished messages return to the queue");
            in_flight.abort_all();
        }
        let _ = channel.close(200, "shutdown".into()).await;
        let _ = connection.close(200, "shutdown".into()).await;
    } else {
        in_flight.abort_all();
    }
    ended
}

async fn process<H: Handler>(
    runtime: Runtime,
    publisher: Publisher,
    handler: Arc<H>,
    queue: String,
    delivery: Delivery,
) {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let message = Incoming {
        queue: queue.clone(),
        routing_key: delivery.routing_key.to_string(),
        body: delivery.data,
        retry_attempt: header_u32(&headers, RETRY_HEADER).unwrap_or(0),
        message_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string()),
        redelivered: delivery.redelivered,
        headers,
    };
    let span = tracing::info_span!(
        "message",
        queue.name = %queue,
        message.amqp_id = message.message_id.as_deref().unwrap_or(""),
        retry.attempt = message.retry_attempt,
        redelivered = message.redelivered,
    );
    crate::trace_context::set_parent_from(&message.headers, &span);
    let metrics = crate::metrics::consumer();
    let timer = metrics
        .handler_seconds
        .with_label_values(&[&queue])
        .start_timer();
    let outcome = AssertUnwindSafe(handler.handle(&message))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    timer.observe_duration();
    let (outcome, panicked) = match outcome {
        Ok(outcome) => (outcome, false),
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            (Outcome::reject(format!("handler panicked: {text}")), true)
        }
    };
    let label = settle(&runtime, &publisher, &delivery.acker, &message, outcome)
        .instrument(span)
        .await;
    let label = if panicked { "panic" } else { label };
    metrics.handled.with_label_values(&[&queue, label]).inc();
}
