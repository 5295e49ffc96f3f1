//! Which provider of its channel a message goes to ([`Providers::route`]), the call through it
//! ([`Providers::dispatch_via`]), and what a change of provider sets off: the metrics, a log line
//! and, once per failover episode, a task for the on-call owner.
//!
//! The route is decided before the rate limit and the claim, so the message's `dispatching`
//! event names the provider and account it goes through, and the rate limit is that account's.

use comms_domain::tasks;

use super::{Dispatch, Outbound, Providers};
use crate::failover::{Failover, Pick, Switch};

/// Where one message goes.
#[derive(Debug, Clone)]
pub struct Route {
    /// The provider's name in the channel's order (`twilio`, `twilio_secondary`, `sendgrid`,
    /// `smtp`), or `portal`.
    pub name: &'static str,
    /// Its place in the order (0: the first).
    pub index: usize,
    /// The rate-limit account (`twilio:<AccountSid>`, `sendgrid`, `smtp`, `portal`).
    pub account: String,
    /// This message is the half-open probe of a provider that was failing.
    pub probe: bool,
    /// The first provider of the channel, when this message goes elsewhere.
    pub failover_from: Option<&'static str>,
}

/// The answer of [`Providers::route`].
#[derive(Debug, Clone)]
pub enum Routed {
    To(Route),
    /// The message's last attempt may have reached `provider`, which is failing: it goes
    /// nowhere else (docs/reliability.md#provider-failover).
    Away {
        provider: String,
    },
}

impl Route {
    /// The `dispatching` event's words for this route.
    pub fn describe(&self) -> String {
        let mut text = format!("dispatching through {} ({})", self.name, self.account);
        if let Some(from) = self.failover_from {
            text.push_str(&format!(", failed over from {from}"));
        }
        if self.probe {
            text.push_str(", probing a provider that was failing");
        }
        text
    }

    /// The `dispatching` event's detail for this route.
    pub fn detail(&self) -> serde_json::Value {
        serde_json::json!({
            "provider": self.name,
            "account": self.account,
            "failover_from": self.failover_from,
            "probe": self.probe,
        })
    }
}

impl Providers {
    /// The provider the next message of `channel` goes to; `pinned` names the provider a
    /// previous attempt of this message may have reached (its outcome unknown there); a `retry`
    /// (a message that failed before) is never made a failback probe.
    pub fn route(&self, channel: &str, pinned: Option<&str>, retry: bool) -> Routed {
        let selection = match self.failover.select(channel, pinned, !retry) {
            Some(Pick::Use(selection)) => selection,
            Some(Pick::Away { provider }) => return Routed::Away { provider },
            // The portal: no list, no failover.
            None => {
                return Routed::To(Route {
                    name: "portal",
                    index: 0,
                    account: "portal".into(),
                    probe: false,
                    failover_from: None,
                });
            }
        };
        Routed::To(Route {
            name: selection.name,
            index: selection.index,
            account: self.account_of(selection.name),
            probe: selection.probe,
            failover_from: selection.failover_from,
        })
    }

    /// Sends `message` through `route` and tells the failover state what the answer says about
    /// the provider.
    pub async fn dispatch_via(&self, route: &Route, message: &Outbound) -> Dispatch {
        let (dispatch, health) = self.call_redacted(route.name, message).await;
        if let Some(switch) = self.failover.report(&message.channel, route.index, health) {
            self.switched(&switch, &dispatch).await;
        }
        dispatch
    }

    /// The traffic of a channel moved: counted, logged, and the on-call owner told once per
    /// episode (an open task with the same title is not opened twice, whichever replica saw it).
    async fn switched(&self, switch: &Switch, dispatch: &Dispatch) {
        publish_gauges(&self.failover);
        let channel = switch.channel.as_str();
        let Some(to) = switch.to else {
            tracing::error!(
                channel,
                provider.last = switch.from,
                "every provider of the channel is failing"
            );
            return;
        };
        if to == switch.from {
            // Back from "every provider failing" to the one that had the traffic: no change.
            tracing::warn!(
                channel,
                provider = to,
                "a provider of the channel answers again"
            );
            return;
        }
        metrics::failovers()
            .with_label_values(&[channel, switch.from, to])
            .inc();
        let why = match dispatch {
            Dispatch::Transient { reason, .. } | Dispatch::Permanent { reason, .. } => {
                reason.as_str()
            }
            Dispatch::Sent { .. } => "the provider answered again",
        };
        if switch.episode_ended {
            tracing::warn!(
                channel,
                provider.from = switch.from,
                provider.to = to,
                "failback: the first provider has the traffic again"
            );
            return;
        }
        tracing::error!(
            channel,
            provider.from = switch.from,
            provider.to = to,
            reason = why,
            "provider failover"
        );
        if !switch.episode_started {
            return;
        }
        let title = format!("{channel} failed over from its first provider");
        let next_action = format!(
            "check {}'s status and our account there; traffic returns by itself once a probe succeeds (every {} s); \
             if {to} fails too the channel pauses",
            self.failover
                .names(channel)
                .first()
                .copied()
                .unwrap_or(switch.from),
            self.settings.providers.failback_after.as_secs(),
        );
        let reason = format!("{channel}: {} → {to}: {why}", switch.from);
        let opened = tasks::open_once(
            &self.pool,
            &self.settings.pause.oncall_owner,
            &title,
            &next_action,
            &reason,
            chrono::Duration::hours(1),
        )
        .await;
        if let Err(error) = opened {
            tracing::error!(%error, channel, "could not open the on-call task for a failover");
        }
    }
}

/// Sets `comms_sender_active_provider` and `comms_sender_provider_open` from the state.
pub(super) fn publish_gauges(failover: &Failover) {
    for channel in ["sms", "email"] {
        for (name, active, open) in failover.snapshot(channel) {
            metrics::active()
                .with_label_values(&[channel, name])
                .set(i64::from(active));
            metrics::open()
                .with_label_values(&[channel, name])
                .set(i64::from(open));
        }
    }
}

mod metrics {
    use std::sync::LazyLock;

    use prometheus::{IntCounterVec, IntGaugeVec};

    pub fn failovers() -> &'static IntCounterVec {
        static M: LazyLock<IntCounterVec> = LazyLock::new(|| {
            comms_runtime::metrics::counter(
                "comms_sender_failover_total",
                "Changes of the provider taking a channel's traffic (failovers and failbacks)",
                &["channel", "from", "to"],
            )
        });
        &M
    }

    pub fn active() -> &'static IntGaugeVec {
        static M: LazyLock<IntGaugeVec> = LazyLock::new(|| {
            comms_runtime::metrics::gauge(
                "comms_sender_active_provider",
                "1 for the provider taking the channel's traffic, 0 for the others (all 0: every provider failing)",
                &["channel", "provider"],
            )
        });
        &M
    }

    pub fn open() -> &'static IntGaugeVec {
        static M: LazyLock<IntGaugeVec> = LazyLock::new(|| {
            comms_runtime::metrics::gauge(
                "comms_sender_provider_open",
                "1 while the provider's breaker is open or probing",
                &["channel", "provider"],
            )
        });
        &M
    }
}
