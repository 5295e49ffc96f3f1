//! Per-channel, per-provider-account rate limits: one limit for the whole fleet, paced locally.
//!
//! Every dispatch, first attempt or retry, waits here, so retries can never burst past a
//! provider's limit. Two gates, in order: governor paces this process (never faster than the
//! limit on its own), then [`fleet::Budget`] takes a token leased from the account's shared GCRA
//! state in PostgreSQL, so all replicas together stay within `per_second` (plus the burst
//! [`plan::Plan`] derives); docs/operations.md#one-rate-limit-across-replicas.

mod fleet;
mod plan;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use comms_runtime::settings::{ChannelRate, RateSettings};
use governor::{DefaultKeyedRateLimiter, Jitter, Quota, RateLimiter};
use sqlx::PgPool;

use self::fleet::Budget;
use self::plan::Plan;

#[derive(Clone)]
pub struct RateLimits {
    by_channel: HashMap<&'static str, Channel>,
    max_replicas: u32,
    pool: PgPool,
}

#[derive(Clone)]
struct Channel {
    local: Arc<DefaultKeyedRateLimiter<String>>,
    plan: Plan,
    /// The fleet budget of each provider account met so far.
    budgets: Arc<Mutex<HashMap<String, Arc<Budget>>>>,
}

impl RateLimits {
    pub fn new(settings: &RateSettings, pool: PgPool) -> Self {
        let mut by_channel = HashMap::new();
        for (channel, rate) in [
            ("sms", &settings.sms),
            ("email", &settings.email),
            ("portal", &settings.portal),
        ] {
            if let (Some(quota), Some(plan)) = (quota(rate), Plan::new(rate.per_second, rate.burst))
            {
                by_channel.insert(
                    channel,
                    Channel {
                        local: Arc::new(RateLimiter::keyed(quota)),
                        plan,
                        budgets: Arc::default(),
                    },
                );
            }
        }
        Self {
            by_channel,
            max_replicas: settings.max_replicas,
            pool,
        }
    }

    /// Takes one dispatch of `channel` for provider `account` if the limit allows it now;
    /// never waits. `false`: no capacity now (the caller must wait with [`Self::until_ready`]).
    pub fn try_take(&self, channel: &str, account: &str) -> bool {
        match self.by_channel.get(channel) {
            Some(limits) => {
                let taken = limits.local.check_key(&account.to_string()).is_ok()
                    && self.budget(channel, limits, account).try_take();
                // Not taken: the dispatch waits in `until_ready`, which observes the wait.
                if taken {
                    comms_domain::messages::metrics::observe_rate_wait(channel, Duration::ZERO);
                }
                taken
            }
            None => true,
        }
    }

    /// Waits until `channel` may dispatch once more for provider `account`.
    pub async fn until_ready(&self, channel: &str, account: &str) {
        if let Some(limits) = self.by_channel.get(channel) {
            let started = Instant::now();
            limits
                .local
                .until_key_ready_with_jitter(
                    &account.to_string(),
                    Jitter::up_to(Duration::from_millis(5)),
                )
                .await;
            self.budget(channel, limits, account).take().await;
            comms_domain::messages::metrics::observe_rate_wait(channel, started.elapsed());
        }
    }

    fn budget(&self, channel: &str, limits: &Channel, account: &str) -> Arc<Budget> {
        let mut budgets = limits.budgets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(budget) = budgets.get(account) {
            return budget.clone();
        }
        let budget = Arc::new(Budget::new(
            channel,
            account,
            limits.plan,
            self.max_replicas,
            self.pool.clone(),
        ));
        budgets.insert(account.to_string(), budget.clone());
        budget
    }
}

fn quota(rate: &ChannelRate) -> Option<Quota> {
    let per_second = NonZeroU32::new(rate.per_second)?;
    let burst = NonZeroU32::new(rate.burst).unwrap_or(per_second);
    Some(Quota::per_second(per_second).allow_burst(burst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A pool whose database never answers: the shared budget is unreachable.
    fn unreachable_store() -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://postgres@127.0.0.1:1/comms")
            .expect("a lazy pool")
    }

    #[tokio::test]
    async fn without_the_shared_budget_a_replica_paces_at_its_share() {
        let settings = RateSettings {
            sms: ChannelRate {
                per_second: 100,
                burst: 100,
            },
            max_replicas: 10,
            ..RateSettings::default()
        };
        let limits = RateLimits::new(&settings, unreachable_store());
        let started = Instant::now();
        for _ in 0..6 {
            limits.until_ready("sms", "twilio:AC1").await;
        }
        // 100/s shared by at most 10 replicas: 10/s here, one at a time, so six take 0.5 s
        // (the local limiter alone would allow all six at once).
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(450), "six sends in {took:?}");
        assert!(took < Duration::from_secs(5), "six sends in {took:?}");
        assert!(
            !(0..3).all(|_| limits.try_take("sms", "twilio:AC1")),
            "the group path gets no more than the share either"
        );
    }

    #[tokio::test]
    async fn a_lifted_limit_always_allows() {
        let settings = RateSettings {
            email: ChannelRate {
                per_second: 0,
                burst: 0,
            },
            ..RateSettings::default()
        };
        let limits = RateLimits::new(&settings, unreachable_store());
        assert!((0..1000).all(|_| limits.try_take("email", "sendgrid")));
    }
}
