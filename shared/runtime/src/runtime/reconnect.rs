//! How long a consumer waits before it reconnects to the broker, and why it may wait less.
//!
//! Backoff protects a broker that is struggling, but once a broker that was down accepts
//! connections again, every second of backoff still to wait is a second of sending lost. So the
//! wait is capped (`consumer.reconnect_max_delay`), and when the broker's port refused a plain TCP
//! connect right after the failure, the port is probed every [`PROBE_INTERVAL`] while the wait
//! lasts: when it accepts a connection again, the wait ends at once. A broker that was reachable
//! all along (the failure was something else) is not hammered: its wait runs to the end.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::uri::AMQPUri;
use tokio::net::TcpStream;

use crate::shutdown::Shutdown;

/// How often the broker's port is probed while a consumer waits to reconnect.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// The capped, jittered delays between reconnects.
pub fn backoff(max_delay: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200).min(max_delay))
        .with_max_delay(max_delay)
        .with_jitter()
        .without_max_times()
        .build()
        // backon's jitter adds to a delay; the cap holds after it.
        .map(move |delay| delay.min(max_delay))
}

/// `host:port` of an AMQP URL, for the probe; `None` when it cannot be read.
pub fn broker_address(url: &str) -> Option<String> {
    let uri: AMQPUri = url.parse().ok()?;
    Some(format!("{}:{}", uri.authority.host, uri.authority.port))
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// The whole delay passed.
    Elapsed,
    /// The broker's port refused, then accepted a connection: reconnect now.
    BrokerBack,
    /// Shutdown was requested.
    Shutdown,
}

/// Whether the broker's port accepts a TCP connection now.
pub async fn answers(address: &str) -> bool {
    tokio::time::timeout(PROBE_INTERVAL, TcpStream::connect(address))
        .await
        .is_ok_and(|connected| connected.is_ok())
}

/// Waits `delay`, or until shutdown; when the broker at `address` was `down` (its port refused a
/// connection after the failure), only until that port answers again.
pub async fn wait(
    address: Option<&str>,
    down: bool,
    delay: Duration,
    shutdown: &Shutdown,
) -> WaitEnd {
    let probing = async {
        let Some(address) = address.filter(|_| down) else {
            return std::future::pending().await;
        };
        while !answers(address).await {
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    };
    tokio::select! {
        () = shutdown.cancelled() => WaitEnd::Shutdown,
        () = tokio::time::sleep(delay) => WaitEnd::Elapsed,
        () = probing => WaitEnd::BrokerBack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_never_exceed_the_cap() {
        let cap = Duration::from_secs(5);
        assert!(backoff(cap).take(50).all(|d| d <= cap));
        let tiny = Duration::from_millis(50);
        assert!(backoff(tiny).take(10).all(|d| d <= tiny));
    }

    #[test]
    fn the_probe_address_comes_from_the_url_without_credentials() {
        assert_eq!(
            broker_address("amqp://guest:secret@rabbit.internal:5673/%2f").as_deref(),
            Some("rabbit.internal:5673")
        );
        assert_eq!(
            broker_address("amqp://localhost").as_deref(),
            Some("localhost:5672")
        );
    }

    #[tokio::test]
    async fn a_broker_that_comes_back_ends_the_wait() {
        // A port nobody listens on yet.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let address = format!("127.0.0.1:{port}");
        let shutdown = Shutdown::new();
        assert!(!answers(&address).await, "nothing listens yet");
        let waiting = tokio::spawn({
            let address = address.clone();
            let shutdown = shutdown.clone();
            async move { wait(Some(&address), true, Duration::from_secs(3600), &shutdown).await }
        });
        let _listener = tokio::net::TcpListener::bind(&address)
            .await
            .expect("rebind");
        let ended = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("the wait ends long before its hour")
            .expect("task");
        assert_eq!(ended, WaitEnd::BrokerBack);
    }

    #[tokio::test]
    async fn a_broker_reachable_all_along_does_not_shorten_the_wait() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let shutdown = Shutdown::new();
        assert!(answers(&address).await);
        let ended = wait(Some(&address), false, PROBE_INTERVAL, &shutdown).await;
        assert_eq!(ended, WaitEnd::Elapsed);
    }
}
