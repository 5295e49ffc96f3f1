//! Workers that publish on their own schedule rather than per consumed message — the outbox
//! relay, the notification-batch flush, the sequence scheduler — all run the same loop: open a
//! confirm-mode publisher on a connection of their own, run a round, run again at once when the
//! round was full, otherwise wait; after a failure report unready, drop the connection and wait a
//! little longer each time. The loop lives here once; each worker says what a round is.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use crate::amqp::{self, Publisher};
use crate::runtime::Runtime;
use crate::shutdown::Shutdown;

/// How one worker's rounds run.
#[derive(Debug, Clone)]
pub struct Rounds {
    /// The readiness check the loop reports to (`/readyz`).
    pub health_check: &'static str,
    /// What the check says while rounds succeed.
    pub healthy: &'static str,
    /// The broker connection's name, as the broker's management shows it.
    pub connection_name: &'static str,
    /// The wait after a round that was not full.
    pub interval: Duration,
    /// A round that did at least this much work is followed by the next one at once.
    pub full: usize,
    /// Logged after a failed round: what becomes of the work (it must never be lost).
    pub on_failure: &'static str,
}

/// A confirm-mode publisher on a connection of its own, with the topology declared.
pub async fn open_publisher(
    runtime: &Runtime,
    connection_name: &str,
) -> Result<(lapin::Connection, Publisher), lapin::Error> {
    let connection = amqp::connect(&runtime.settings.amqp, connection_name).await?;
    let publisher = Publisher::open(&connection).await?;
    runtime.topology.declare(publisher.channel()).await?;
    Ok((connection, publisher))
}

/// The wait after the `failures`-th failure in a row: 200 ms more each time, at most 10 s.
fn after_failures(failures: u32) -> Duration {
    Duration::from_millis(200 * u64::from(failures.min(50)))
}

/// Runs `round` (returning how much work it did) until `shutdown`, reconnecting after any
/// failure of the round or of the connection.
pub async fn run_rounds<F, Fut, E>(
    runtime: Runtime,
    shutdown: Shutdown,
    rounds: Rounds,
    mut round: F,
) where
    F: FnMut(Publisher) -> Fut,
    Fut: Future<Output = Result<usize, E>>,
    E: Display,
{
    let mut publisher: Option<(lapin::Connection, Publisher)> = None;
    let mut failures: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let outcome = match publisher.as_ref().filter(|(_, p)| p.is_usable()) {
            Some((_, p)) => round(p.clone()).await.map_err(|e| e.to_string()),
            None => match open_publisher(&runtime, rounds.connection_name).await {
                Ok(opened) => {
                    publisher = Some(opened);
                    continue;
                }
                Err(error) => Err(format!("broker: {error}")),
            },
        };
        let wait = match outcome {
            Ok(done) => {
                failures = 0;
                runtime
                    .health
                    .set(rounds.health_check, true, rounds.healthy);
                if done >= rounds.full {
                    continue;
                }
                rounds.interval
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                runtime
                    .health
                    .set(rounds.health_check, false, format!("retrying: {error}"));
                tracing::warn!(%error, "{}", rounds.on_failure);
                publisher = None;
                after_failures(failures)
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_after_failures_grows_by_200_ms_up_to_10_s() {
        assert_eq!(after_failures(1), Duration::from_millis(200));
        assert_eq!(after_failures(5), Duration::from_secs(1));
        assert_eq!(after_failures(50), Duration::from_secs(10));
        assert_eq!(after_failures(u32::MAX), Duration::from_secs(10));
    }
}
