//! Provider failover: which provider of a channel's ordered list the next message goes to, as
//! one state machine per channel with a breaker per provider (docs/reliability.md#provider-failover).
//!
//! It is pure apart from the clock, so its rules are tested with a controlled clock (`tests.rs`):
//!
//! - a provider's breaker opens at once on a failover-class answer ([`Health::Failing`]: 5xx,
//!   401/403, a refused connection), or after `pause.breaker_failures` degraded answers in a row
//!   ([`Health::Degraded`]: 429, a timeout after the request was sent);
//! - the next message goes to the first provider of the list whose breaker is closed;
//! - `providers.failback_after` after a breaker opened, exactly one message probes that provider
//!   (half-open); its success closes the breaker, so the traffic goes back to it; its failure
//!   opens it again for another interval. A probe never reported (its message was held by a
//!   pause, say) is given up after another interval. A message that already failed once (a
//!   retry) is never made a probe, so a failing provider cannot use up one message's attempts;
//! - a message whose last attempt may have reached a provider (its outcome unknown) is *pinned*:
//!   it goes to that provider or nowhere ([`Pick::Away`]), never to another one;
//! - when every provider is failing the first one takes the traffic, and the circuit breaker
//!   (`crate::breaker`) pauses the channel as it always did.
//!
//! Each change of the provider that takes the traffic is returned as a [`Switch`], for the metrics,
//! the log and the on-call task (`crate::providers::route`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_runtime::clock::Clock;

#[cfg(test)]
mod tests;

/// How long a message pinned to a failing provider (its last attempt may have reached it) waits
/// for that provider, from that attempt, before it is failed as `dispatch_outcome_unknown`:
/// 3 × `sender.provider_timeout` + 5 s (docs/reliability.md#provider-failover). Not the in-flight
/// bound of a claimed message (`rules::in_flight::outcome_unknown_after`): this message is not in
/// flight, it waits for its provider to come back.
pub fn pinned_wait(provider_timeout: Duration) -> Duration {
    provider_timeout * 3 + Duration::from_secs(5)
}

/// What one provider call says about the provider's health (not about the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It answered: accepted the message, or refused this message for a reason of its own.
    Up,
    /// A failover-class failure: 5xx, 401/403, a refused connection (nothing was sent).
    Failing,
    /// A failure that counts toward the breaker: 429, a timeout after the request was sent.
    Degraded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        run: u32,
    },
    Open {
        since: DateTime<Utc>,
    },
    /// Half-open: one probe message is on its way since `started`.
    Probing {
        started: DateTime<Utc>,
    },
}

/// The provider list of one channel and the state of each provider's breaker.
struct Chain {
    names: Vec<&'static str>,
    states: Vec<State>,
    /// The provider unpinned traffic goes to; `None` while every provider is failing.
    active: Option<usize>,
    /// The last provider that took the traffic (a switch is counted from it).
    last_active: usize,
    /// Since the first provider lost the traffic and until it has it back.
    in_episode: bool,
}

/// Where one message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub index: usize,
    pub name: &'static str,
    /// This message is the half-open probe of a provider that was failing.
    pub probe: bool,
    /// The channel's first provider when this message goes elsewhere (it failed over).
    pub failover_from: Option<&'static str>,
}

/// The answer of [`Failover::select`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Use(Selection),
    /// The message is pinned to `provider`, which is failing while another one is not: it must
    /// not go elsewhere (its outcome there is unknown), so it waits or is decided as unknown.
    Away {
        provider: String,
    },
}

/// A change of the provider that takes a channel's traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub channel: String,
    pub from: &'static str,
    /// `None`: every provider of the channel is failing.
    pub to: Option<&'static str>,
    /// The first provider lost the traffic: a failover episode starts (one on-call task).
    pub episode_started: bool,
    /// The first provider has the traffic back: the episode is over.
    pub episode_ended: bool,
}

/// The failover state of every channel with a provider list.
pub struct Failover {
    clock: Arc<dyn Clock>,
    threshold: u32,
    failback_after: Duration,
    chains: Mutex<HashMap<String, Chain>>,
}

impl Failover {
    /// `orders`: each channel's providers in order of preference. `threshold`: degraded answers
    /// in a row that open a breaker (0: only failover-class answers do).
    pub fn new(
        clock: Arc<dyn Clock>,
        orders: &[(&str, Vec<&'static str>)],
        threshold: u32,
        failback_after: Duration,
    ) -> Self {
        let chains = orders
            .iter()
            .map(|(channel, names)| {
                let chain = Chain {
                    names: names.clone(),
                    states: vec![State::Closed { run: 0 }; names.len()],
                    active: Some(0),
                    last_active: 0,
                    in_episode: false,
                };
                (channel.to_string(), chain)
            })
            .collect();
        Self {
            clock,
            threshold,
            failback_after,
            chains: Mutex::new(chains),
        }
    }

    fn chains(&self) -> MutexGuard<'_, HashMap<String, Chain>> {
        self.chains.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn interval(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.failback_after).unwrap_or(chrono::Duration::MAX)
    }

    /// The providers of `channel` in order (empty for a channel without a list: the portal).
    pub fn names(&self, channel: &str) -> Vec<&'static str> {
        self.chains()
            .get(channel)
            .map(|c| c.names.clone())
            .unwrap_or_default()
    }

    /// Where the next unpinned message of `channel` would go, without starting a probe (the
    /// rate-limit account, the group path's plan).
    pub fn current(&self, channel: &str) -> Option<&'static str> {
        let chains = self.chains();
        let chain = chains.get(channel)?;
        Some(chain.names[chain.active.unwrap_or(0)])
    }

    /// Whether every provider of `channel` is failing (a channel without a list: always, so the
    /// circuit breaker pauses it as before failover).
    pub fn all_failing(&self, channel: &str) -> bool {
        self.chains()
            .get(channel)
            .is_none_or(|c| c.active.is_none())
    }

    /// Picks the provider of the next message of `channel`; `pinned` names the provider its last
    /// attempt may have reached; `may_probe` is false for a retry. May start a probe (the caller
    /// must [`Failover::report`] it).
    pub fn select(&self, channel: &str, pinned: Option<&str>, may_probe: bool) -> Option<Pick> {
        let now = self.clock.now();
        let interval = self.interval();
        let mut chains = self.chains();
        let chain = chains.get_mut(channel)?;
        let index = match pinned {
            Some(name) => {
                let Some(index) = chain.names.iter().position(|n| *n == name) else {
                    return Some(Pick::Away {
                        provider: name.to_string(),
                    });
                };
                // With every provider failing, its own provider is where it would go anyway.
                if !usable(chain.states[index], now, interval) && chain.active.is_some() {
                    return Some(Pick::Away {
                        provider: name.to_string(),
                    });
                }
                index
            }
            None => (0..chain.names.len())
                .find(|&i| match chain.states[i] {
                    State::Closed { .. } => true,
                    state => may_probe && usable(state, now, interval),
                })
                .unwrap_or(0),
        };
        let probe = !matches!(chain.states[index], State::Closed { .. })
            && usable(chain.states[index], now, interval);
        if probe {
            chain.states[index] = State::Probing { started: now };
        }
        Some(Pick::Use(Selection {
            index,
            name: chain.names[index],
            probe,
            failover_from: (index > 0).then(|| chain.names[0]),
        }))
    }

    /// Records what a call to provider `index` of `channel` said about it; returns the change of
    /// the provider taking the traffic, if any.
    pub fn report(&self, channel: &str, index: usize, health: Health) -> Option<Switch> {
        let now = self.clock.now();
        let threshold = self.threshold;
        let mut chains = self.chains();
        let chain = chains.get_mut(channel)?;
        let state = chain.states.get_mut(index)?;
        *state = match (health, *state) {
            (Health::Up, _) => State::Closed { run: 0 },
            (Health::Failing, _) | (Health::Degraded, State::Probing { .. }) => {
                State::Open { since: now }
            }
            (Health::Degraded, State::Closed { run }) if threshold > 0 && run + 1 >= threshold => {
                State::Open { since: now }
            }
            (Health::Degraded, State::Closed { run }) => State::Closed { run: run + 1 },
            (Health::Degraded, open @ State::Open { .. }) => open,
        };
        chain.switch(channel)
    }

    /// Every provider of `channel` back to closed, the first one active (after the channel was
    /// paused: whoever resumes it starts again from the top of the list).
    pub fn reset(&self, channel: &str) {
        if let Some(chain) = self.chains().get_mut(channel) {
            chain.states.fill(State::Closed { run: 0 });
            chain.active = Some(0);
            chain.last_active = 0;
            chain.in_episode = false;
        }
    }

    /// `(provider, active, breaker open)` for every provider of `channel`, for the gauges.
    pub fn snapshot(&self, channel: &str) -> Vec<(&'static str, bool, bool)> {
        let chains = self.chains();
        let Some(chain) = chains.get(channel) else {
            return Vec::new();
        };
        chain
            .names
            .iter()
            .zip(&chain.states)
            .enumerate()
            .map(|(i, (name, state))| {
                let open = !matches!(state, State::Closed { .. });
                (*name, chain.active == Some(i), open)
            })
            .collect()
    }
}

impl Chain {
    /// Recomputes the active provider after a report; a change is a [`Switch`].
    fn switch(&mut self, channel: &str) -> Option<Switch> {
        let active = self
            .states
            .iter()
            .position(|s| matches!(s, State::Closed { .. }));
        if active == self.active {
            return None;
        }
        self.active = active;
        // One provider: nothing to fail over to (the circuit breaker alone acts), nothing to say.
        if self.names.len() == 1 {
            return None;
        }
        let from = self.names[self.last_active];
        if let Some(to) = active {
            self.last_active = to;
        }
        let episode_started = !self.in_episode && active.is_some_and(|i| i > 0);
        let episode_ended = self.in_episode && active == Some(0);
        if episode_started {
            self.in_episode = true;
        }
        if episode_ended {
            self.in_episode = false;
        }
        Some(Switch {
            channel: channel.to_string(),
            from,
            to: active.map(|i| self.names[i]),
            episode_started,
            episode_ended,
        })
    }
}

/// Whether a message may go to a provider in `state` now: closed, or due a probe (its breaker
/// opened an interval ago, or its last probe was never reported within one).
fn usable(state: State, now: DateTime<Utc>, interval: chrono::Duration) -> bool {
    match state {
        State::Closed { .. } => true,
        State::Open { since } => now >= since + interval,
        State::Probing { started } => now >= started + interval,
    }
}
