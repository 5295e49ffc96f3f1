//! The arithmetic of the fleet-wide limit: how long a lease lives, how much burst the shared
//! GCRA state keeps, and how many tokens one lease may hold, so that the provider never sees more
//! than `per_second + burst` sends in any one second, whatever the number of replicas.
//!
//! A token used at time `u` was granted by PostgreSQL at `g` with `u - g < lifetime` (a replica
//! starts a lease's clock before it asks, and discards what is left when it runs out). So the
//! tokens used in any second `(a, a + 1]` were granted in `(a - lifetime, a + 1]`, and GCRA with
//! tolerance `τ` grants at most `floor((1 + lifetime + τ) · rate) + 1` in such an interval.
//! With `τ = (burst - 1) / rate - lifetime` that is `rate + burst`.

use std::time::Duration;

/// The longest a lease lives: short enough that a dead replica's tokens are soon lost for good.
const MAX_LIFETIME: Duration = Duration::from_millis(500);

/// The fleet-wide limit of one channel, derived from its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Sends per second across the fleet.
    pub per_second: f64,
    /// Sends the provider may see beyond `per_second` in one second (at least 2).
    pub burst: u32,
    /// How long a leased token may be used after it was asked for.
    pub lifetime: Duration,
    /// GCRA tolerance of the shared state, in seconds.
    pub tolerance: f64,
    /// The most tokens one lease can hold (what the shared state grants at once after idling).
    pub max_lease: u32,
}

impl Plan {
    /// `None` when the limit is lifted (`per_second` 0). A `burst` of 0 means `per_second`, as
    /// for the local limiter; below 2 it is 2, since a lease needs a lifetime.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        if per_second == 0 {
            return None;
        }
        let burst = if burst == 0 { per_second } else { burst }.max(2);
        let rate = f64::from(per_second);
        let spare = f64::from(burst - 1) / rate;
        let lifetime = Duration::from_secs_f64(spare / 2.0).min(MAX_LIFETIME);
        let tolerance = spare - lifetime.as_secs_f64();
        let max_lease = (tolerance * rate).floor() as u32 + 1;
        Some(Self {
            per_second: rate,
            burst,
            lifetime,
            tolerance,
            max_lease,
        })
    }

    /// How many tokens to ask for, given this replica's recent use (tokens per second): about
    /// half a lifetime's worth, so a lease is used up well before it expires and little is lost.
    pub fn lease_size(&self, recent_per_second: f64) -> u32 {
        let want = (recent_per_second * self.lifetime.as_secs_f64() / 2.0).ceil();
        (want as u32).clamp(1, self.max_lease)
    }

    /// The most the provider can see in any one second (`per_second + burst`).
    #[cfg(test)]
    fn ceiling(&self) -> f64 {
        self.per_second + f64::from(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_the_rate_plus_the_burst() {
        for (rate, burst) in [(50, 10), (10, 10), (5000, 5000), (5000, 10), (1, 2), (3, 1)] {
            let plan = Plan::new(rate, burst).expect("limited");
            let granted_in_window =
                ((1.0 + plan.lifetime.as_secs_f64() + plan.tolerance) * plan.per_second + 1e-9)
                    .floor()
                    + 1.0;
            assert!(
                granted_in_window <= plan.ceiling() + 1e-9,
                "{rate}/{burst}: {granted_in_window} > {}",
                plan.ceiling()
            );
            assert!(plan.tolerance >= 0.0 && plan.max_lease >= 1);
            assert!(plan.lifetime > Duration::ZERO && plan.lifetime <= MAX_LIFETIME);
        }
    }

    #[test]
    fn leases_follow_demand_within_the_tolerance() {
        let plan = Plan::new(50, 10).expect("limited");
        assert_eq!(plan.lifetime, Duration::from_millis(90));
        assert_eq!(plan.max_lease, 5);
        assert_eq!(plan.lease_size(0.0), 1);
        assert_eq!(plan.lease_size(20.0), 1);
        assert_eq!(plan.lease_size(1000.0), 5);
        let big = Plan::new(5000, 10_000).expect("limited");
        assert_eq!(big.lifetime, MAX_LIFETIME);
        assert_eq!(big.lease_size(1700.0), 425);
        assert!(Plan::new(0, 10).is_none());
    }
}
