//! The circuit breaker: a channel whose providers keep failing is paused automatically, through
//! the same pause switch an on-call engineer uses, with an owner task. It never resumes by itself
//! unless `pause.breaker_auto_resume` says so.
//!
//! With a list of providers (`crate::failover`), a failing provider first moves the traffic to
//! the next one; the channel is paused only when every provider of the list is failing and the
//! failures in a row have reached `pause.breaker_failures`. With one provider that is the rule
//! of before failover: N failures in a row pause the channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::failover::Failover;

use comms_domain::pause::store::{self, PauseRequest};
use comms_domain::pause::{Scope, switch::PauseSwitch};
use comms_runtime::settings::PauseSettings;
use sqlx::PgPool;

pub struct Breaker {
    threshold: u32,
    failover: Arc<Failover>,
    settings: PauseSettings,
    failures: Mutex<HashMap<String, u32>>,
    /// Channels this breaker paused, with the switch's generation at that moment: until the
    /// switch has applied a change since, the pause is on its way and must not be made again
    /// (a group of failing dispatches would otherwise pause, and task on-call, once per run).
    tripped: Mutex<HashMap<String, u64>>,
}

impl Breaker {
    pub fn new(settings: &PauseSettings, failover: Arc<Failover>) -> Self {
        Self {
            threshold: settings.breaker_failures,
            failover,
            settings: settings.clone(),
            failures: Mutex::new(HashMap::new()),
            tripped: Mutex::new(HashMap::new()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tripped(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.tripped.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn success(&self, channel: &str) {
        self.counts().remove(channel);
    }

    /// Counts a provider failure; pauses the channel when the run reaches the threshold.
    pub async fn failure(&self, pool: &PgPool, switch: &PauseSwitch, channel: &str, reason: &str) {
        if self.threshold == 0 {
            return;
        }
        let run = {
            let mut counts = self.counts();
            let run = counts.entry(channel.to_string()).or_insert(0);
            *run += 1;
            *run
        };
        let scope = Scope::Channel(channel.to_string());
        if run < self.threshold
            || !self.failover.all_failing(channel)
            || switch.active().iter().any(|p| p.scope == scope)
        {
            return;
        }
        // Claimed before the pause is written, under one lock: concurrent failures of the same
        // run (a group's calls fail together) must not each pause the channel.
        let generation = switch.generation();
        {
            let mut tripped = self.tripped();
            if tripped.get(channel) == Some(&generation) {
                return;
            }
            tripped.insert(channel.to_string(), generation);
        }
        let request = PauseRequest {
            scope,
            reason: format!(
                "automatic: provider failing ({run} failures in a row; last: {reason})"
            ),
            actor: "comms-sender (circuit breaker)".into(),
            expires_at: self
                .settings
                .breaker_auto_resume
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| chrono::Utc::now() + d),
            automatic: true,
        };
        match store::pause(pool, &request).await {
            Ok(pause) => {
                tracing::error!(
                    channel,
                    failures = run,
                    "provider failing: channel paused automatically"
                );
                let task = sqlx::query(
                    "INSERT INTO comms.tasks (owner, title, next_action, reason, due_at)
                     VALUES ($1, $2, $3, $4, now() + interval '1 hour')",
                )
                .bind(&self.settings.oncall_owner)
                .bind(format!("{channel} paused automatically: provider failing"))
                .bind(format!(
                    "check the provider; when it is healthy: commsctl resume --channel {channel} --reason \"provider recovered\""
                ))
                .bind(&pause.reason)
                .execute(pool)
                .await;
                if let Err(error) = task {
                    tracing::error!(%error, "could not open the on-call task for an automatic pause");
                }
                self.success(channel);
                // Whoever resumes the channel starts again from its first provider.
                self.failover.reset(channel);
            }
            Err(error) => {
                // Not paused after all: the next failure may try again.
                self.tripped().remove(channel);
                tracing::error!(%error, channel, "circuit breaker could not pause the channel")
            }
        }
    }
}
