//! The sections of [`super::Settings`], one struct each, with their defaults written in code.
//! Every field is documented because this is the reference of what can be configured.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// PostgreSQL URL (`COMMS__DATABASE__URL`). May carry a password, so it is a secret.
    #[serde(serialize_with = "super::masked::url")]
    pub url: SecretString,
    /// Upper bound of pooled connections per process.
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://postgres@127.0.0.1:5432/comms"),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    /// RabbitMQ URL (`COMMS__AMQP__URL`); carries credentials, so it is a secret.
    #[serde(serialize_with = "super::masked::url")]
    pub url: SecretString,
    /// Prepended to every exchange and queue name. Empty in production; tests and shared brokers
    /// use it to keep fleets apart on one vhost.
    pub namespace: String,
    /// The largest AMQP frame this process proposes (bytes, at least 4096), unless the URL sets
    /// `frame_max`. lapin keeps two buffers of 32 frames per connection, so RabbitMQ's default of
    /// 128 KiB would pin 8 MiB per connection; send requests and callbacks are a few KiB, and a
    /// larger message is simply split over more frames.
    pub frame_max: u32,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            namespace: String::new(),
            frame_max: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` are served (`COMMS__HTTP__LISTEN`).
    pub listen: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `info,comms_sender=debug`; `RUST_LOG` wins if set.
    pub level: String,
    /// Where to export traces: an OTLP/HTTP collector's base URL (spans go to `<url>/v1/traces`).
    /// Unset, the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// are used; with none of them, trace context still travels but no span is exported.
    pub otlp_endpoint: Option<String>,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
            otlp_endpoint: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerSettings {
    /// Unacknowledged deliveries the broker may hand one consumer.
    pub prefetch: u16,
    /// Messages one consumer handles at the same time.
    pub concurrency: usize,
    /// For workers that handle deliveries in groups (the sender, the status worker): the most
    /// deliveries taken into one group. A group is whatever has arrived, never waited for, so a
    /// quiet queue still moves one message at a time. 1 turns grouping off.
    ///
    /// `batch_max` (`COMMS__CONSUMER__BATCH_MAX`) is its deprecated earlier name and still
    /// works; set one of the two, not both ("group" is the fleet's word for deliveries decided
    /// together, "batch" the digest worker's notification batching).
    #[serde(alias = "batch_max")]
    pub group_max: usize,
    /// For the same workers: the most groups one consumer handles at the same time. The next
    /// group is taken from what has arrived only when one of these slots is free, so under load
    /// deliveries gather into fewer, larger groups (fewer statements per message) instead of
    /// many small ones competing for the same database connections.
    pub groups_in_flight: usize,
    /// Broker-carried retries before a message is parked in `comms.dead`.
    pub max_retries: u32,
    /// How long in-flight messages may finish after SIGTERM before they are returned.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The longest wait between two reconnects to the broker (and a broker that refused
    /// connections is probed meanwhile, so its return ends the wait at once).
    #[serde(with = "humantime_serde")]
    pub reconnect_max_delay: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            prefetch: 128,
            concurrency: 64,
            group_max: 32,
            groups_in_flight: 4,
            max_retries: 12,
            shutdown_grace: Duration::from_secs(20),
            reconnect_max_delay: Duration::from_secs(5),
        }
    }
}

/// A rate for one channel and provider account, for the whole fleet however many senders run
/// (docs/operations.md#one-rate-limit-across-replicas).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelRate {
    /// Sustained sends per second; 0 lifts the limit.
    pub per_second: u32,
    /// Sends allowed at once after an idle period.
    pub burst: u32,
}

impl Default for ChannelRate {
    fn default() -> Self {
        Self {
            per_second: 10,
            burst: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateSettings {
    pub sms: ChannelRate,
    pub email: ChannelRate,
    pub portal: ChannelRate,
    /// The most sender replicas that ever run at once: a replica that cannot reach the shared
    /// budget in PostgreSQL sends at `per_second / max_replicas` until it can again.
    pub max_replicas: u32,
}

impl Default for RateSettings {
    fn default() -> Self {
        Self {
            sms: ChannelRate::default(),
            email: ChannelRate::default(),
            portal: ChannelRate::default(),
            max_replicas: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SenderSettings {
    /// Provider attempts before a message is `failed` with an owner task.
    pub max_attempts: u32,
    /// Start of the window (recipient's local time, `HH:MM`) for outreach and review SMS.
    pub quiet_hours_end: String,
    /// End of that window; after it, such SMS wait for the next morning.
    pub quiet_hours_start: String,
    /// Time zone used when a contact has none.
    pub default_time_zone: String,
    /// Timeout of one provider HTTP call.
    #[serde(with = "humantime_serde")]
    pub provider_timeout: Duration,
}

impl Default for SenderSettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            quiet_hours_end: "08:00".into(),
            quiet_hours_start: "21:00".into(),
            default_time_zone: "UTC".into(),
            provider_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PauseSettings {
    /// Past this age without a confirmed read of the switch, a worker behaves as paused.
    #[serde(with = "humantime_serde")]
    pub max_staleness: Duration,
    /// How often the stored switch is re-read even when no broadcast arrives.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Consecutive provider failures on one channel that pause it automatically (0: never).
    pub breaker_failures: u32,
    /// If set, an automatic pause expires after this long; otherwise it waits for a person.
    #[serde(with = "humantime_serde")]
    pub breaker_auto_resume: Option<Duration>,
    /// Who gets the task when the fleet pauses itself.
    pub oncall_owner: String,
}

impl Default for PauseSettings {
    fn default() -> Self {
        Self {
            max_staleness: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            breaker_failures: 25,
            breaker_auto_resume: None,
            oncall_owner: "on-call".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Where the gateway's HTTP server listens (`COMMS__GATEWAY__LISTEN`).
    pub listen: SocketAddr,
    /// The public base URL providers call (Twilio signs the full public URL, which differs from
    /// the request URL behind a load balancer).
    pub public_url: String,
    /// Secret path segment that protects SendGrid Inbound Parse, which carries no signature.
    #[serde(serialize_with = "super::masked::secret")]
    pub inbound_secret: SecretString,
    /// Bodies larger than this get 413.
    pub max_body_bytes: usize,
    /// SendGrid event-webhook timestamps further than this from now are refused.
    #[serde(with = "humantime_serde")]
    pub signature_tolerance: Duration,
    /// How long a console login lasts before the operator must sign in again.
    #[serde(with = "humantime_serde")]
    pub console_session_ttl: Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            inbound_secret: SecretString::from("change-me-inbound-secret"),
            max_body_bytes: 1024 * 1024,
            signature_tolerance: Duration::from_secs(300),
            console_session_ttl: Duration::from_secs(8 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusSettings {
    /// How long a callback for a message we do not know yet is retried before it is parked
    /// (a callback can outrun the sender's commit).
    #[serde(with = "humantime_serde")]
    pub unknown_message_retry_for: Duration,
    /// Sent messages with no status callback for this long make the channel's provider
    /// freshness uncertain, which pauses the channel.
    #[serde(with = "humantime_serde")]
    pub freshness_window: Duration,
    /// A message `sent` this long without a final status is checked at its provider
    /// (reconciliation, docs/reliability.md); `0s` turns reconciliation off.
    #[serde(with = "humantime_serde")]
    pub reconcile_after: Duration,
    /// The partial-loss check opens a task when at least this share of a channel's messages
    /// dispatched one to two freshness windows ago still has no final status.
    pub partial_loss_ratio: f64,
    /// ... and at least this many were dispatched in that band.
    pub partial_loss_min: i64,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            unknown_message_retry_for: Duration::from_secs(600),
            freshness_window: Duration::from_secs(1800),
            reconcile_after: Duration::from_secs(600),
            partial_loss_ratio: 0.2,
            partial_loss_min: 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalSettings {
    /// A message waiting this long for an owner's decision is blocked as `approval_expired`.
    #[serde(with = "humantime_serde")]
    pub expire_after: Duration,
    /// How often a sender runs approval housekeeping (expiry, lost republishes).
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// Most characters (subject and body) of portal-visible wording.
    pub portal_max_chars: usize,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self {
            expire_after: Duration::from_secs(72 * 3600),
            check_interval: Duration::from_secs(60),
            portal_max_chars: 600,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepliesSettings {
    /// Who gets replies that match no outbound message (never dropped).
    pub triage_owner: String,
    /// How long an owner has to answer a reply (the task's due time).
    #[serde(with = "humantime_serde")]
    pub response_due: Duration,
    /// Domain of the reply-to addresses (`reply+<token>@<domain>`) on outbound email.
    pub reply_domain: String,
    /// Key that signs one-click unsubscribe links, so one cannot be forged for another contact.
    #[serde(serialize_with = "super::masked::secret")]
    pub unsubscribe_secret: SecretString,
    /// Template sent (once) to confirm an SMS opt-out, if it exists and is approved.
    pub opt_out_template: String,
    /// Template answering HELP/INFO.
    pub help_template: String,
}

impl Default for RepliesSettings {
    fn default() -> Self {
        Self {
            triage_owner: "triage".into(),
            response_due: Duration::from_secs(4 * 3600),
            reply_domain: "replies.example.com".into(),
            unsubscribe_secret: SecretString::from("change-me-unsubscribe-secret"),
            opt_out_template: "sms_opt_out_confirmation".into(),
            help_template: "sms_help".into(),
        }
    }
}
