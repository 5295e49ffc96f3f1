//! The consume loop of one queue, and the supervisor that rebuilds it after any failure.
//!
//! lapin's own recovery does not restore QoS and drops acks of pre-recovery deliveries, so we do
//! not rely on it: any broker or channel error ends the session, and the supervisor opens a new
//! connection, re-declares the topology, sets prefetch again and consumes again, after a capped,
//! jittered backoff. Unacked deliveries of a dead session return to the queue by themselves.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use lapin::Acker;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::reconnect;
use super::settle::settle;
use super::{Handler, Incoming, Outcome, RETRY_HEADER, ROUTING_KEY_HEADER, Runtime};
use crate::amqp::{self, Publisher, header_str, header_u32};
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
    let check = super::consumer_check(&queue.name);
    let max_delay = runtime.settings.consumer.reconnect_max_delay;
    let broker = reconnect::broker_address(runtime.settings.amqp.url.expose_secret());
    let mut backoff = reconnect::backoff(max_delay);
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
                    backoff = reconnect::backoff(max_delay);
                }
                let delay = backoff.next().unwrap_or(max_delay);
                let down = match &broker {
                    Some(address) => !reconnect::answers(address).await,
                    None => false,
                };
                tracing::warn!(queue.name = %queue.name, %error, retry.in_ms = delay.as_millis() as u64, broker.down = down, "consumer lost; reconnecting");
                match reconnect::wait(broker.as_deref(), down, delay, &shutdown).await {
                    reconnect::WaitEnd::Shutdown => break,
                    reconnect::WaitEnd::BrokerBack => {
                        tracing::info!(queue.name = %queue.name, "broker answers again; reconnecting now");
                    }
                    reconnect::WaitEnd::Elapsed => {}
                }
            }
        }
    }
    metrics.connected.with_label_values(&[&queue.name]).set(0);
    runtime.health.set(&check, false, "stopped");
    tracing::info!(queue.name = %queue.name, "consumer stopped");
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
        .set(&super::consumer_check(&queue.name), true, "consuming");
    tracing::info!(queue.name = %queue.name, prefetch = settings.prefetch, concurrency = settings.concurrency, "consuming");

    let permits = Arc::new(Semaphore::new(settings.concurrency));
    // A group never outgrows what may be in flight, or it could never get its permits.
    let group_max = if handler.handles_groups() {
        settings.group_max.min(settings.concurrency)
    } else {
        1
    };
    // Without groups every delivery is its own "group": only `concurrency` bounds them.
    let slots = Arc::new(Semaphore::new(if group_max > 1 {
        settings.groups_in_flight
    } else {
        settings.concurrency
    }));
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
        // A free group slot first: while every slot is busy, arriving deliveries gather (up to
        // the prefetch) and the next group takes them all at once.
        // (A delivery held while stopping is never acked: the broker delivers it again.)
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else {
            break Err(SessionError::StreamEnded);
        };
        // Whatever else has already arrived joins the group; nothing waits for more.
        let mut group = vec![delivery];
        let mut failed = None;
        while group.len() < group_max {
            match consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => group.push(delivery),
                Some(Some(Err(error))) => {
                    failed = Some(SessionError::Broker(error));
                    break;
                }
                Some(None) => {
                    failed = Some(SessionError::StreamEnded);
                    break;
                }
                None => break,
            }
        }
        if let Some(error) = failed {
            // The session is over: the group was never handled, so the broker delivers it again.
            break Err(error);
        }
        let wanted = u32::try_from(group.len()).unwrap_or(u32::MAX);
        let Ok(permit) = permits.clone().acquire_many_owned(wanted).await else {
            break Err(SessionError::StreamEnded);
        };
        let task = process_group(
            runtime.clone(),
            publisher.clone(),
            handler.clone(),
            queue.name.clone(),
            group,
            group_max > 1,
        );
        in_flight.spawn(async move {
            task.await;
            drop(permit);
            drop(slot);
        });
    };

    if ended.is_ok() {
        // Stop new deliveries, give in-flight messages the grace period, then return the rest.
        let _ = channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await;
        finish_in_flight(&mut in_flight, settings.shutdown_grace, &queue.name).await;
        let _ = channel.close(200, "shutdown".into()).await;
        let _ = connection.close(200, "shutdown".into()).await;
    } else {
        // The broker link is gone, so these deliveries come back anyway; but work already at a
        // provider must still record what happened, or a sent message would read as unknown.
        finish_in_flight(&mut in_flight, settings.shutdown_grace, &queue.name).await;
    }
    ended
}

/// Lets in-flight work finish within `grace`, then stops what is left (its deliveries return to
/// the queue).
async fn finish_in_flight(in_flight: &mut JoinSet<()>, grace: Duration, queue: &str) {
    let drained = tokio::time::timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(queue.name = %queue, unfinished = in_flight.len(), "grace period over; unfinished messages return to the queue");
        in_flight.abort_all();
    }
}

/// Decides one group of deliveries (always of one when grouping is off: a handler that does not
/// group, or `consumer.group_max = 1`) and settles each delivery with its own outcome.
async fn process_group<H: Handler>(
    runtime: Runtime,
    publisher: Publisher,
    handler: Arc<H>,
    queue: String,
    group: Vec<Delivery>,
    grouping: bool,
) {
    let (messages, ackers): (Vec<Incoming>, Vec<Acker>) = group
        .into_iter()
        .map(|delivery| incoming(&queue, delivery))
        .unzip();
    let metrics = crate::metrics::consumer();
    // While grouping is on, a handler that groups decides even a group of one as a group: its
    // group path is its fast path (fewer round trips), and what it cannot take it hands to
    // `handle` itself. `consumer.group_max = 1` turns grouping off: every delivery to `handle`.
    if let ([message], false) = (messages.as_slice(), grouping) {
        let span = message_span(&queue, message);
        let timer = metrics
            .handler_seconds
            .with_label_values(&[&queue])
            .start_timer();
        let decided = decide(handler.as_ref(), message, span.clone()).await;
        timer.observe_duration();
        finish(&runtime, &publisher, &ackers[0], message, decided, span).await;
        return;
    }
    let span = tracing::info_span!("group", queue.name = %queue, group.size = messages.len());
    for message in &messages {
        crate::trace_context::link_from(&message.headers, &span);
    }
    let timer = metrics
        .handler_seconds
        .with_label_values(&[&queue])
        .start_timer();
    let outcomes = AssertUnwindSafe(handler.handle_group(&messages))
        .catch_unwind()
        .instrument(span)
        .await;
    timer.observe_duration();
    match outcomes {
        Ok(outcomes) if outcomes.len() == messages.len() => {
            let settled =
                messages
                    .iter()
                    .zip(&ackers)
                    .zip(outcomes)
                    .map(|((message, acker), outcome)| {
                        let span = message_span(&queue, message);
                        finish(&runtime, &publisher, acker, message, (outcome, false), span)
                    });
            futures_util::future::join_all(settled).await;
        }
        broken => {
            let why = match broken {
                Ok(outcomes) => format!(
                    "{} outcomes for {} deliveries",
                    outcomes.len(),
                    messages.len()
                ),
                Err(panic) => panic_text(panic.as_ref()),
            };
            tracing::error!(queue.name = %queue, %why, "group handler failed; deciding each delivery on its own");
            let one_by_one = messages.iter().zip(&ackers).map(|(message, acker)| {
                let span = message_span(&queue, message);
                let (runtime, publisher, handler) = (&runtime, &publisher, handler.as_ref());
                async move {
                    let decided = decide(handler, message, span.clone()).await;
                    finish(runtime, publisher, acker, message, decided, span).await;
                }
            });
            futures_util::future::join_all(one_by_one).await;
        }
    }
}

fn incoming(queue: &str, delivery: Delivery) -> (Incoming, Acker) {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    // How long a first delivery waited in the queue (publishers stamp the AMQP timestamp, in
    // seconds). A retry's stamp is its re-publish, so its delay-tier wait would count: skipped.
    if header_u32(&headers, RETRY_HEADER).unwrap_or(0) == 0
        && let Some(published) = delivery.properties.timestamp()
    {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        crate::metrics::consumer()
            .queue_wait_seconds
            .with_label_values(&[queue])
            .observe(now.saturating_sub(*published) as f64);
    }
    let message = Incoming {
        queue: queue.to_string(),
        // Back from a delay tier: the key it was published with, not the tier's.
        routing_key: header_str(&headers, ROUTING_KEY_HEADER)
            .unwrap_or_else(|| delivery.routing_key.to_string()),
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
    (message, delivery.acker)
}

fn message_span(queue: &str, message: &Incoming) -> tracing::Span {
    let span = tracing::info_span!(
        "message",
        queue.name = %queue,
        message.amqp_id = message.message_id.as_deref().unwrap_or(""),
        retry.attempt = message.retry_attempt,
        redelivered = message.redelivered,
    );
    crate::trace_context::set_parent_from(&message.headers, &span);
    span
}

/// One delivery through [`Handler::handle`]; a panic becomes a rejection naming it.
async fn decide<H: Handler>(
    handler: &H,
    message: &Incoming,
    span: tracing::Span,
) -> (Outcome, bool) {
    match AssertUnwindSafe(handler.handle(message))
        .catch_unwind()
        .instrument(span)
        .await
    {
        Ok(outcome) => (outcome, false),
        Err(panic) => (
            Outcome::reject(format!("handler panicked: {}", panic_text(panic.as_ref()))),
            true,
        ),
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

async fn finish(
    runtime: &Runtime,
    publisher: &Publisher,
    acker: &Acker,
    message: &Incoming,
    (outcome, panicked): (Outcome, bool),
    span: tracing::Span,
) {
    let label = settle(runtime, publisher, acker, message, outcome)
        .instrument(span)
        .await;
    let label = if panicked { "panic" } else { label };
    crate::metrics::consumer()
        .handled
        .with_label_values(&[&message.queue, label])
        .inc();
}
