//! Per-channel, per-provider-account rate limits (governor, in this process).
//!
//! Every dispatch, first attempt or retry, waits here, so retries can never burst past a
//! provider's limit. governor keeps its state in memory: with N sender replicas the fleet-wide
//! rate is N times the configured one, so configure `per_second` as the provider's limit divided
//! by the replica count (docs/operations.md).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use comms_shared::settings::{ChannelRate, RateSettings};
use governor::{DefaultKeyedRateLimiter, Jitter, Quota, RateLimiter};

#[derive(Clone, Default)]
pub struct RateLimits {
    by_channel: HashMap<&'static str, Arc<DefaultKeyedRateLimiter<String>>>,
}

impl RateLimits {
    pub fn new(settings: &RateSettings) -> Self {
        let mut by_channel = HashMap::new();
        for (channel, rate) in [
            ("sms", &settings.sms),
            ("email", &settings.email),
            ("portal", &settings.portal),
        ] {
            if let Some(quota) = quota(rate) {
                by_channel.insert(channel, Arc::new(RateLimiter::keyed(quota)));
            }
        }
        Self { by_channel }
    }

    /// Takes one dispatch of `channel` for provider `account` if the limit allows it now;
    /// never waits. `false`: no capacity now (the caller must wait with [`Self::until_ready`]).
    pub fn try_take(&self, channel: &str, account: &str) -> bool {
        match self.by_channel.get(channel) {
            Some(limiter) => limiter.check_key(&account.to_string()).is_ok(),
            None => true,
        }
    }

    /// Waits until `channel` may dispatch once more for provider `account`.
    pub async fn until_ready(&self, channel: &str, account: &str) {
        if let Some(limiter) = self.by_channel.get(channel) {
            limiter
                .until_key_ready_with_jitter(
                    &account.to_string(),
                    Jitter::up_to(std::time::Duration::from_millis(5)),
                )
                .await;
        }
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

    #[test]
    fn a_group_takes_no_more_than_the_burst_at_once() {
        let settings = RateSettings {
            sms: ChannelRate {
                per_second: 1,
                burst: 3,
            },
            ..RateSettings::default()
        };
        let limits = RateLimits::new(&settings);
        let taken = (0..10)
            .filter(|_| limits.try_take("sms", "twilio:AC1"))
            .count();
        assert_eq!(taken, 3, "the burst, then nothing until the rate refills");
        assert!(
            limits.try_take("sms", "twilio:AC2"),
            "another account has its own budget"
        );
    }

    #[test]
    fn a_lifted_limit_always_allows() {
        let settings = RateSettings {
            email: ChannelRate {
                per_second: 0,
                burst: 0,
            },
            ..RateSettings::default()
        };
        let limits = RateLimits::new(&settings);
        assert!((0..1000).all(|_| limits.try_take("email", "sendgrid")));
    }
}
