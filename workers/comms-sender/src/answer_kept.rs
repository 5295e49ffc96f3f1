//! Keeping a provider's answer through a database hiccup.
//!
//! Once a provider call has started, what the provider said exists only in this process's
//! memory until it is written. Given up at the first database error (a restart, a dropped
//! connection, the pool waiting too long on a starved machine), the delivery went back to the
//! broker and its redelivery found the message in `sending` with its call started: waited out as
//! in flight, then failed as `dispatch_outcome_unknown` with an owner task — for a message the
//! provider had in fact accepted, whose provider id was lost. So the write that follows a call
//! (the acceptance, the retry or failure, a hold caught after the claim) is tried again while
//! the error is one the database gets over, for up to [`crate::outcome_unknown_after`] of
//! waiting in all (`sender.provider_timeout` + 5 s): the same bound a redelivery gives a live
//! process to record its call. Every such write is conditional on the claim still holding the
//! message in `sending`, so one that committed although its answer was lost is never applied
//! twice: the next try finds the message moved and changes nothing.
//!
//! The same holds before a call, for the claim itself: a claim statement that failed with such an
//! error may have committed (the connection cut right after its `COMMIT` reached the server),
//! which left its messages marked as called with no call behind them. Since this process knows
//! it made no call, it releases them ([`release_unconfirmed_claim`]).

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use comms_domain::messages::ledger;
use comms_runtime::db_error;
use comms_runtime::settings::Settings;
use sqlx::PgPool;
use uuid::Uuid;

/// The first wait after a failed write; each wait after it doubles, up to [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(100);
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// Runs `write` (what became of the provider call of `id`, a message or a claim) until it
/// succeeds, fails for good, or the waits between its tries reach the bound; returns its last
/// result.
pub(crate) async fn record<T, F, Fut>(
    settings: &Settings,
    id: Uuid,
    write: F,
) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    write
        .retry(waits(crate::outcome_unknown_after(settings)))
        .sleep(tokio::time::sleep)
        .when(db_error::is_transient)
        .notify(|error, wait| {
            tracing::warn!(
                dispatch.id = %id,
                // Only transient errors are tried again (the connection, the pool, the
                // server's availability): their text quotes no value.
                %error,
                retry_in_ms = wait.as_millis() as u64,
                "writing what became of a dispatch (an answer, a hold, a claim's release) failed; trying again"
            );
        })
        .await
}

/// After a claim statement failed with a transient error, which leaves open whether it
/// committed (a connection cut right after its `COMMIT` reached the server): no provider call
/// was made for `claim`, so whatever it holds is released to be sent again
/// ([`ledger::calls::release_uncalled`]) instead of being failed as `dispatch_outcome_unknown`
/// once the bound has passed. Tried through a database hiccup like an answer; should it still
/// fail, the messages it holds are left to that rule.
pub(crate) async fn release_unconfirmed_claim(pool: &PgPool, settings: &Settings, claim: Uuid) {
    let released = record(settings, claim, || {
        ledger::calls::release_uncalled(pool, claim, crate::store::ACTOR)
    })
    .await;
    match released {
        Ok(0) => {}
        Ok(count) => tracing::warn!(
            claim.id = %claim,
            released = count,
            "a claim whose commit was not confirmed had committed; released, no provider call was made"
        ),
        Err(error) => tracing::warn!(
            claim.id = %claim,
            reason = db_error::refused_reason(&error),
            "a claim whose commit was not confirmed could not be released"
        ),
    }
}

/// Doubling waits with jitter, as many as fit in `budget`.
fn waits(budget: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(FIRST_WAIT)
        .with_max_delay(LONGEST_WAIT)
        .without_max_times()
        .with_total_delay(Some(budget))
        .with_jitter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    #[test]
    fn the_waits_stop_within_the_budget_and_never_exceed_the_longest() {
        let budget = Duration::from_secs(7);
        let waits: Vec<Duration> = waits(budget).build().collect();
        assert!(waits.len() >= 4, "several tries fit: {waits:?}");
        assert!(waits.iter().sum::<Duration>() <= budget);
        // With jitter a wait can reach twice its base.
        assert!(waits.iter().all(|w| *w <= LONGEST_WAIT * 2), "{waits:?}");
    }
}
