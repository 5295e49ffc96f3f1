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

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use comms_runtime::db_error;
use comms_runtime::settings::Settings;
use uuid::Uuid;

/// The first wait after a failed write; each wait after it doubles, up to [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(100);
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// Runs `write` (what became of message `message_id`'s provider call) until it succeeds, fails
/// for good, or the waits between its tries reach the bound; returns its last result.
pub(crate) async fn record<T, F, Fut>(
    settings: &Settings,
    message_id: Uuid,
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
                message.id = %message_id,
                // Only transient errors are tried again (the connection, the pool, the
                // server's availability): their text quotes no value.
                %error,
                retry_in_ms = wait.as_millis() as u64,
                "recording a provider call's outcome failed; trying again"
            );
        })
        .await
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
