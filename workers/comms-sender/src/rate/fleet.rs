//! One provider account's share of the fleet-wide limit in this replica: tokens leased from the
//! GCRA row in PostgreSQL (`comms.take_rate_lease`, migration 0013), spent here without a round
//! trip, renewed ahead of need, and discarded when their lease runs out.
//!
//! When the shared state cannot be reached (an error, or no answer within
//! [`STORE_TIMEOUT`]), the replica spends what it still holds, then paces at a conservative local
//! share, `per_second / max_replicas`, and asks the store again after [`RETRY_STORE`].

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sqlx::PgPool;

use super::plan::Plan;

/// The longest a lease request may take before this replica paces on its own.
const STORE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a replica paces on its own before asking the store again.
const RETRY_STORE: Duration = Duration::from_secs(1);

static LEASES: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    comms_runtime::metrics::counter(
        "comms_sender_rate_leases_total",
        "Lease requests to the fleet-wide rate budget, by result (granted, wait, unreachable)",
        &["channel", "result"],
    )
});

static EXPIRED: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    comms_runtime::metrics::counter(
        "comms_sender_rate_tokens_expired_total",
        "Leased tokens of the fleet-wide rate budget that ran out unused in this replica",
        &["channel"],
    )
});

/// One provider account of one channel.
pub struct Budget {
    channel: String,
    account: String,
    plan: Plan,
    pool: PgPool,
    held: Mutex<Held>,
    /// One lease request at a time per account and replica.
    asking: tokio::sync::Mutex<()>,
    /// The local share used while the store is unreachable.
    fallback: DefaultDirectRateLimiter,
}

#[derive(Default)]
struct Held {
    /// Leased tokens left, with the instant each lease runs out, oldest first.
    leases: VecDeque<(u32, Instant)>,
    /// Tokens taken since `counting_since`, to size the next lease.
    taken: u32,
    counting_since: Option<Instant>,
    recent_per_second: f64,
    renewing: bool,
    /// Set while the store is unreachable: pace locally until then.
    store_down_until: Option<Instant>,
}

enum Lease {
    Granted,
    Wait(Duration),
    Unreachable,
}

impl Budget {
    pub fn new(channel: &str, account: &str, plan: Plan, max_replicas: u32, pool: PgPool) -> Self {
        let share = Duration::from_secs_f64(f64::from(max_replicas.max(1)) / plan.per_second);
        let quota = Quota::with_period(share)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        Self {
            channel: channel.to_string(),
            account: account.to_string(),
            plan,
            pool,
            held: Mutex::new(Held::default()),
            asking: tokio::sync::Mutex::new(()),
            fallback: RateLimiter::direct(quota),
        }
    }

    /// Takes a token if one is at hand now, never waiting (the group path).
    pub fn try_take(self: &Arc<Self>) -> bool {
        if self.take_held() {
            return true;
        }
        if self.store_down() {
            return self.fallback.check().is_ok();
        }
        self.renew_ahead();
        false
    }

    /// Waits for a token: from a lease, a new lease, or the local share while the store is down.
    pub async fn take(self: &Arc<Self>) {
        loop {
            if self.take_held() {
                return;
            }
            if self.store_down() {
                self.fallback.until_ready().await;
                return;
            }
            let asking = self.asking.lock().await;
            if self.take_held() {
                return;
            }
            let outcome = self.lease().await;
            drop(asking);
            if let Lease::Wait(wait) = outcome {
                tokio::time::sleep(wait.min(self.plan.lifetime)).await;
            }
        }
    }

    /// Takes a held token, and starts a renewal when the lease runs low.
    fn take_held(self: &Arc<Self>) -> bool {
        let now = Instant::now();
        let (taken, low) = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            while let Some((left, ends)) = held.leases.front().copied() {
                if left > 0 && ends > now {
                    break;
                }
                if left > 0 {
                    EXPIRED
                        .with_label_values(&[&self.channel])
                        .inc_by(u64::from(left));
                }
                held.leases.pop_front();
            }
            let Some(front) = held.leases.front_mut() else {
                return false;
            };
            front.0 -= 1;
            held.taken += 1;
            let left: u32 = held.leases.iter().map(|(n, _)| n).sum();
            let size = self.plan.lease_size(held.recent_per_second);
            (true, left <= size / 2)
        };
        if low {
            self.renew_ahead();
        }
        taken
    }

    fn store_down(&self) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.store_down_until
            .is_some_and(|until| until > Instant::now())
    }

    /// Asks for the next lease in the background, unless a request is already under way.
    fn renew_ahead(self: &Arc<Self>) {
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if held.renewing {
                return;
            }
            held.renewing = true;
        }
        let budget = self.clone();
        tokio::spawn(async move {
            if let Ok(asking) = budget.asking.try_lock() {
                budget.lease().await;
                drop(asking);
            }
            budget
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .renewing = false;
        });
    }

    /// One lease request; the caller holds `asking`.
    async fn lease(&self) -> Lease {
        let asked_at = Instant::now();
        let want = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            let since = *held.counting_since.get_or_insert(asked_at);
            let elapsed = asked_at.duration_since(since);
            if elapsed >= self.plan.lifetime {
                held.recent_per_second = f64::from(held.taken) / elapsed.as_secs_f64();
                held.taken = 0;
                held.counting_since = Some(asked_at);
            }
            self.plan.lease_size(held.recent_per_second)
        };
        let key = format!("{}:{}", self.channel, self.account);
        let asked = sqlx::query_as::<_, (i32, f64)>(
            "SELECT granted, wait_seconds FROM comms.take_rate_lease($1, $2, $3, $4)",
        )
        .bind(&key)
        .bind(i32::try_from(want).unwrap_or(i32::MAX))
        .bind(self.plan.per_second)
        .bind(self.plan.tolerance)
        .fetch_one(&self.pool);
        let answer = tokio::time::timeout(STORE_TIMEOUT, asked).await;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match answer {
            Ok(Ok((granted, _))) if granted > 0 => {
                // The lease's clock started before the question: it never outlives its bound.
                let ends = asked_at + self.plan.lifetime;
                held.leases
                    .push_back((u32::try_from(granted).unwrap_or(0), ends));
                held.store_down_until = None;
                LEASES.with_label_values(&[&self.channel, "granted"]).inc();
                Lease::Granted
            }
            Ok(Ok((_, wait))) => {
                held.store_down_until = None;
                LEASES.with_label_values(&[&self.channel, "wait"]).inc();
                Lease::Wait(Duration::from_secs_f64(wait.clamp(0.000_1, 1.0)))
            }
            Ok(Err(error)) => self.unreachable(&mut held, &error.to_string()),
            Err(_) => self.unreachable(&mut held, "no answer within 1s"),
        }
    }

    fn unreachable(&self, held: &mut Held, why: &str) -> Lease {
        if held.store_down_until.is_none() {
            tracing::warn!(
                channel = %self.channel,
                error = why,
                "the fleet-wide rate budget is unreachable: pacing at this replica's conservative share"
            );
        }
        held.store_down_until = Some(Instant::now() + RETRY_STORE);
        LEASES
            .with_label_values(&[&self.channel, "unreachable"])
            .inc();
        Lease::Unreachable
    }
}
