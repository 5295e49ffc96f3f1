//! The broker topology: every exchange, queue and binding of the fleet, in one place.
//!
//! Every process declares the whole topology at start and after every reconnect. Declarations
//! are idempotent, so the order in which pods start does not matter and a broker that lost its
//! definitions is repaired by the next process that connects. See docs/architecture.md for the
//! table of who publishes and who consumes.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

/// The delay tiers a retry waits in. A retry is parked in the smallest tier at least as long as
/// the wanted delay (capped at the largest), so the broker, not a sleeping consumer, carries it.
/// The exponential schedule starts at 1 s; the 250 ms tier is for waits known to be short (a
/// status callback that outran the sender's commit by a few milliseconds).
pub const RETRY_TIERS: &[Duration] = &[
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

/// Deliveries of one message before the broker itself dead-letters it (a poison message that
/// crashes the process every time must not loop forever).
pub const DELIVERY_LIMIT: i64 = 20;

/// Names of every exchange and queue, with the deployment's namespace prepended.
#[derive(Debug, Clone)]
pub struct Topology {
    namespace: String,
}

/// A work queue: its name and the routing keys that fill it.
#[derive(Debug, Clone)]
pub struct WorkQueue {
    pub name: String,
    pub exchange: String,
    pub routing_key: String,
}

impl Topology {
    /// Names under `namespace`, separated from it by a `.`: `acc` and `acc.` both give
    /// `acc.comms.send.sms`; an empty namespace gives the plain names.
    pub fn new(namespace: impl Into<String>) -> Self {
        let mut namespace = namespace.into();
        if !namespace.is_empty() && !namespace.ends_with('.') {
            namespace.push('.');
        }
        Self { namespace }
    }

    /// `base` (`comms.send.sms`) under this namespace.
    pub fn name(&self, base: &str) -> String {
        format!("{}{}", self.namespace, base)
    }

    /// The namespace with its trailing `.` (empty in production).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Send requests, routed by `send.<channel>`.
    pub fn send_exchange(&self) -> String {
        self.name("comms.send")
    }
    /// Verified provider webhooks, routed by `status.<provider>` and `inbound.<provider>`.
    pub fn provider_exchange(&self) -> String {
        self.name("comms.provider")
    }
    pub fn digest_exchange(&self) -> String {
        self.name("comms.digest")
    }
    pub fn incident_exchange(&self) -> String {
        self.name("comms.incident")
    }
    /// Enrolments (`sequence.enrol`) and outcomes (`outcome.<type>`), for `comms-sequences`.
    pub fn sequence_exchange(&self) -> String {
        self.name("comms.sequence")
    }
    /// Lifecycle events for upstream apps, routed by `message.<event>` and `task.<event>`.
    pub fn events_exchange(&self) -> String {
        self.name("comms.events")
    }
    /// Fanout that tells every worker at once that the pause switch changed.
    pub fn control_exchange(&self) -> String {
        self.name("comms.control")
    }
    /// Where retries and deferrals are published, routed by `<tier>.<work queue>`.
    ///
    /// Named `comms.delay` since the tiers became quorum queues: the classic `comms.retry` tiers
    /// of earlier versions cannot be re-declared as quorum queues under the same names, so an
    /// upgraded broker keeps the old ones until they drain (docs/operations.md).
    pub fn retry_exchange(&self) -> String {
        self.name("comms.delay")
    }
    /// Where expired retries come back from the tiers, routed by `<tier>.<work queue>`.
    pub fn requeue_exchange(&self) -> String {
        self.name("comms.requeue")
    }
    /// Dead-letter exchange of every work queue; it fills `comms.dead`.
    pub fn dead_exchange(&self) -> String {
        self.name("comms.dlx")
    }
    /// Parking queue for messages that cannot be processed, each with its reason.
    pub fn dead_queue(&self) -> String {
        self.name("comms.dead")
    }

    /// The send queue of one channel (`sms`, `email`, `portal`).
    pub fn send_queue(&self, channel: &str) -> WorkQueue {
        WorkQueue {
            name: self.name(&format!("comms.send.{channel}")),
            exchange: self.send_exchange(),
            routing_key: format!("send.{channel}"),
        }
    }

    /// Every work queue of the fleet, with its binding.
    pub fn work_queues(&self) -> Vec<WorkQueue> {
        let mut queues: Vec<WorkQueue> = ["sms", "email", "portal"]
            .iter()
            .map(|c| self.send_queue(c))
            .collect();
        queues.push(self.status_queue());
        queues.push(self.replies_queue());
        queues.push(self.digest_queue());
        queues.push(WorkQueue {
            name: self.name("comms.incident.jobs"),
            exchange: self.incident_exchange(),
            routing_key: "#".into(),
        });
        queues.push(self.webhooks_queue());
        queues.push(self.sequence_queue());
        queues
    }

    /// Enrolments and outcomes from upstream, for `comms-sequences`.
    pub fn sequence_queue(&self) -> WorkQueue {
        WorkQueue {
            name: self.name("comms.sequence.jobs"),
            exchange: self.sequence_exchange(),
            routing_key: "#".into(),
        }
    }

    /// Report-digest and notification-batching jobs, for `comms-digest`.
    pub fn digest_queue(&self) -> WorkQueue {
        WorkQueue {
            name: self.name("comms.digest.jobs"),
            exchange: self.digest_exchange(),
            routing_key: "#".into(),
        }
    }

    /// Every lifecycle event, for the webhook deliveries of `comms-events`.
    pub fn webhooks_queue(&self) -> WorkQueue {
        WorkQueue {
            name: self.name("comms.webhooks"),
            exchange: self.events_exchange(),
            routing_key: "#".into(),
        }
    }

    /// Delivery-status callbacks from every provider.
    pub fn status_queue(&self) -> WorkQueue {
        WorkQueue {
            name: self.name("comms.status"),
            exchange: self.provider_exchange(),
            routing_key: "status.*".into(),
        }
    }

    /// Inbound SMS and email from every provider.
    pub fn replies_queue(&self) -> WorkQueue {
        WorkQueue {
            name: self.name("comms.replies"),
            exchange: self.provider_exchange(),
            routing_key: "inbound.*".into(),
        }
    }

    /// The tier for a delay that is a minimum (a provider's `Retry-After`): the smallest at least
    /// as long, else the largest.
    pub fn retry_tier(delay: Duration) -> Duration {
        RETRY_TIERS
            .iter()
            .copied()
            .find(|tier| *tier >= delay)
            .unwrap_or(RETRY_TIERS[RETRY_TIERS.len() - 1])
    }

    /// The tier for a computed delay: the largest not longer than it (at least the smallest), so
    /// a schedule or a deferral never waits longer than asked; long waits take several hops.
    pub fn retry_tier_floor(delay: Duration) -> Duration {
        RETRY_TIERS
            .iter()
            .rev()
            .copied()
            .find(|tier| *tier <= delay)
            .unwrap_or(RETRY_TIERS[0])
    }

    /// Short label of a tier, used in queue names and routing keys (`250ms`, `1s`, `2m`, `1h`).
    pub fn tier_label(tier: Duration) -> String {
        let secs = tier.as_secs();
        if tier.subsec_nanos() != 0 {
            format!("{}ms", tier.as_millis())
        } else if secs >= 3600 && secs.is_multiple_of(3600) {
            format!("{}h", secs / 3600)
        } else if secs >= 60 && secs.is_multiple_of(60) {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        }
    }

    /// The delay queue of one tier (`comms.delay.5s`).
    pub fn retry_queue(&self, tier: Duration) -> String {
        self.name(&format!("comms.delay.{}", Self::tier_label(tier)))
    }

    /// Routing key that parks a message for `queue` in `tier` and later returns it to `queue`.
    pub fn retry_routing_key(tier: Duration, queue: &str) -> String {
        format!("{}.{queue}", Self::tier_label(tier))
    }

    /// Declares every exchange, queue and binding. Safe to call any number of times.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for exchange in [
            self.send_exchange(),
            self.provider_exchange(),
            self.digest_exchange(),
            self.incident_exchange(),
            self.sequence_exchange(),
            self.events_exchange(),
            self.retry_exchange(),
            self.requeue_exchange(),
        ] {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await?;
        }
        for exchange in [self.control_exchange(), self.dead_exchange()] {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Fanout,
                    durable,
                    FieldTable::default(),
                )
                .await?;
        }

        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(
                self.dead_queue().as_str().into(),
                durable_queue,
                quorum_args(None),
            )
            .await?;
        bind(channel, &self.dead_queue(), &self.dead_exchange(), "").await?;

        for queue in self.work_queues() {
            channel
                .queue_declare(
                    queue.name.as_str().into(),
                    durable_queue,
                    quorum_args(Some(&self.dead_exchange())),
                )
                .await?;
            bind(channel, &queue.name, &queue.exchange, &queue.routing_key).await?;
            let back = format!("*.{}", queue.name);
            bind(channel, &queue.name, &self.requeue_exchange(), &back).await?;
        }

        for tier in RETRY_TIERS {
            let name = self.retry_queue(*tier);
            channel
                .queue_declare(
                    name.as_str().into(),
                    durable_queue,
                    delay_args(*tier, &self.requeue_exchange()),
                )
                .await?;
            let pattern = format!("{}.#", Self::tier_label(*tier));
            bind(channel, &name, &self.retry_exchange(), &pattern).await?;
        }
        Ok(())
    }
}

/// A delay tier: a quorum queue whose messages expire after `tier` and are dead-lettered back
/// through `requeue_exchange` *at least once*. RabbitMQ's default dead-lettering is at most once:
/// a message that expires while its work queue has no leader (a broker restart, a node failover)
/// is dropped. With `at-least-once` the tier keeps the message until the work queue confirms it,
/// which RabbitMQ allows only together with `x-overflow: reject-publish`.
fn delay_args(tier: Duration, requeue_exchange: &str) -> FieldTable {
    let mut args = quorum_args(None);
    let ttl = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(requeue_exchange.into()),
    );
    args.insert(
        "x-dead-letter-strategy".into(),
        AMQPValue::LongString("at-least-once".into()),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    args
}

fn quorum_args(dead_letter_exchange: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(dlx) = dead_letter_exchange {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
    }
    args
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), lapin::Error> {
    channel
        .queue_bind(
            ShortString::from(queue),
            ShortString::from(exchange),
            ShortString::from(routing_key),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_is_parked_in_the_smallest_tier_that_covers_it() {
        assert_eq!(
            Topology::retry_tier(Duration::from_millis(10)),
            Duration::from_millis(250)
        );
        assert_eq!(
            Topology::retry_tier(Duration::from_millis(400)),
            Duration::from_secs(1)
        );
        assert_eq!(
            Topology::retry_tier(Duration::from_secs(6)),
            Duration::from_secs(30)
        );
        assert_eq!(
            Topology::retry_tier(Duration::from_secs(86_400)),
            Duration::from_secs(3600)
        );
        assert_eq!(
            Topology::retry_tier_floor(Duration::from_secs(6)),
            Duration::from_secs(5)
        );
        assert_eq!(
            Topology::retry_tier_floor(Duration::from_millis(10)),
            Duration::from_millis(250)
        );
        assert_eq!(
            Topology::retry_tier_floor(Duration::from_millis(1500)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn retry_keys_route_back_to_their_queue() {
        let t = Topology::new("");
        let key = Topology::retry_routing_key(Duration::from_secs(120), "comms.send.sms");
        assert_eq!(key, "2m.comms.send.sms");
        assert_eq!(t.retry_queue(Duration::from_secs(3600)), "comms.delay.1h");
        assert_eq!(
            t.retry_queue(Duration::from_millis(250)),
            "comms.delay.250ms"
        );
        assert_eq!(
            Topology::retry_routing_key(Duration::from_millis(250), "comms.status"),
            "250ms.comms.status"
        );
        assert_eq!(t.send_queue("email").routing_key, "send.email");
    }

    #[test]
    fn a_namespace_is_separated_from_the_names_by_one_dot() {
        for namespace in ["acc", "acc."] {
            let t = Topology::new(namespace);
            assert_eq!(t.send_queue("sms").name, "acc.comms.send.sms");
            assert_eq!(t.dead_queue(), "acc.comms.dead");
        }
        assert_eq!(Topology::new("").send_queue("sms").name, "comms.send.sms");
    }
}
