//! Webhook deliveries: every event on `comms.webhooks` goes to each active webhook of its app
//! that subscribed to its type, signed, and each (webhook, event) pair is delivered once.
//!
//! A delivery's state lives in `comms.webhook_deliveries`, so when one of several endpoints fails,
//! the event is retried through the broker's delay tiers and only the endpoints that have not
//! taken it yet are called again. A delivery is given up as `failed` after
//! `events.webhook_max_attempts` attempts; a webhook that fails `events.webhook_disable_after`
//! times in a row is disabled, with a task for its owner. Replays
//! (`commsctl webhooks replay`) arrive with [`REPLAY_HEADER`] naming one webhook, which is then
//! called again whatever its delivery's state.

mod deliver;
mod store;

use comms_domain::events::LifecycleEvent;
use comms_runtime::amqp::header_str;
use comms_runtime::runtime::{Handler, Incoming, Outcome, Runtime};
use uuid::Uuid;

pub use deliver::Attempt;
pub use store::Webhook;

pub use comms_domain::events::WEBHOOK_REPLAY_HEADER as REPLAY_HEADER;

/// Delivers events to webhooks.
pub struct WebhookHandler {
    pool: sqlx::PgPool,
    client: deliver::Deliverer,
    max_attempts: u32,
    disable_after: u32,
}

impl WebhookHandler {
    pub fn new(runtime: &Runtime) -> anyhow::Result<Self> {
        let events = &runtime.settings.events;
        Ok(Self {
            pool: runtime.pool.clone(),
            client: deliver::Deliverer::new(events.webhook_timeout, events.webhook_allow_private)?,
            // The runtime dead-letters after `consumer.max_retries`: give up before that, with
            // the delivery recorded as failed.
            max_attempts: events
                .webhook_max_attempts
                .min(runtime.settings.consumer.max_retries.saturating_add(1))
                .max(1),
            disable_after: events.webhook_disable_after.max(1),
        })
    }

    async fn deliver_all(
        &self,
        event: &LifecycleEvent,
        body: &[u8],
        replay: Option<Uuid>,
    ) -> Outcome {
        let hooks = match store::subscribed(&self.pool, event, replay).await {
            Ok(hooks) => hooks,
            Err(error) => return comms_runtime::db_error::outcome(&error),
        };
        let mut pending = 0usize;
        for hook in hooks {
            match self.deliver_one(&hook, event, body, replay.is_some()).await {
                Ok(true) => {}
                Ok(false) => pending += 1,
                Err(error) => return comms_runtime::db_error::outcome(&error),
            }
        }
        if pending == 0 {
            Outcome::Ack
        } else {
            Outcome::retry(format!(
                "{pending} webhook endpoint(s) did not take the event yet"
            ))
        }
    }

    /// Delivers to one webhook; `Ok(true)` when nothing is left to do for it.
    async fn deliver_one(
        &self,
        hook: &Webhook,
        event: &LifecycleEvent,
        body: &[u8],
        replay: bool,
    ) -> Result<bool, sqlx::Error> {
        let delivery = store::delivery(&self.pool, hook.id, event, replay).await?;
        if !replay && delivery.state != "pending" {
            return Ok(true);
        }
        let attempt = self.client.post(hook, event.event_id, body).await;
        if attempt.succeeded() {
            store::delivered(&self.pool, hook.id, delivery.id, &attempt).await?;
            tracing::info!(webhook.id = %hook.id, event.id = %event.event_id, "webhook delivered");
            return Ok(true);
        }
        let outcome = store::failed_attempt(
            &self.pool,
            hook,
            delivery.id,
            &attempt,
            self.max_attempts,
            self.disable_after,
        )
        .await?;
        tracing::warn!(
            webhook.id = %hook.id,
            event.id = %event.event_id,
            attempt.error = %attempt.describe(),
            delivery.given_up = outcome.given_up,
            webhook.disabled = outcome.disabled,
            "webhook delivery failed"
        );
        Ok(outcome.given_up || outcome.disabled)
    }
}

impl Handler for WebhookHandler {
    async fn handle(&self, message: &Incoming) -> Outcome {
        let event: LifecycleEvent = match message.json() {
            Ok(event) => event,
            Err(reason) => return Outcome::reject(format!("invalid_event: {reason}")),
        };
        let replay = header_str(&message.headers, REPLAY_HEADER).and_then(|v| v.parse().ok());
        self.deliver_all(&event, &message.body, replay).await
    }
}
