//! One rate limit across sender replicas: three senders share one provider account limited to
//! 50/s (burst 10) for 20 s, and the provider's own timestamps show no more than 60 in any
//! one-second window, while the fleet still sends close to the limit.
//!
//! The three senders are three sender runtimes in this process, each with its own database pool,
//! its own broker connections and its own rate limiter: what replicas share in production (the
//! database and the broker) is shared here, and nothing else is. They run in one process so the
//! test can start and stop them deterministically without building and wiring binaries. Kept in
//! its own test binary because it takes over 20 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use comms_runtime::clock::SystemClock;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::fleet::{SendFleet, sms_request};

const LIMIT: usize = 50;
const BURST: usize = 10;
const SENDS: usize = 1000;

fn phone(i: usize) -> String {
    format!("+1415555{:04}", 1000 + i % 20)
}

/// The most timestamps that fall in any window of one second.
fn busiest_second(times: &mut [DateTime<Utc>]) -> usize {
    times.sort();
    let mut busiest = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= chrono::Duration::seconds(1) {
            start += 1;
        }
        busiest = busiest.max(end - start + 1);
    }
    busiest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_senders_keep_one_limit_together() {
    let per_second = LIMIT.to_string();
    let burst = BURST.to_string();
    let fleet = SendFleet::without_sender(&[
        ("COMMS__RATE__SMS__PER_SECOND", per_second.as_str()),
        ("COMMS__RATE__SMS__BURST", burst.as_str()),
        ("COMMS__CONSUMER__GROUP_MAX", "32"),
    ])
    .await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}, welcome aboard!")
        .await;
    for i in 0..20 {
        fleet.sms_contact(&phone(i), "implied").await;
    }
    for i in 0..SENDS {
        fleet
            .send(&sms_request(&format!("r-{i}"), &phone(i), fleet.client_id))
            .await;
    }

    let shutdown = Shutdown::new();
    let mut senders = Vec::new();
    for _ in 0..3 {
        let pool = comms_runtime::db::connect(&fleet.env.settings.database)
            .await
            .expect("a replica's own pool");
        let runtime = Runtime::new(fleet.env.settings.clone(), pool);
        senders.push(tokio::spawn(comms_sender::run(
            runtime,
            Arc::new(SystemClock),
            shutdown.clone(),
        )));
    }

    let sandbox = fleet.sandbox();
    let started = Instant::now();
    let all_sent = comms_tests::eventually(Duration::from_secs(45), || async {
        sandbox.messages().await.map(|m| m.len()).unwrap_or(0) >= SENDS
    })
    .await;
    let took = started.elapsed();
    let recorded = sandbox.messages().await.expect("sandbox messages");
    assert!(
        all_sent,
        "only {} of {SENDS} sent in {took:?}",
        recorded.len()
    );

    let mut times: Vec<_> = recorded.iter().map(|m| m.received_at).collect();
    let busiest = busiest_second(&mut times);
    let span = (times[times.len() - 1] - times[0])
        .to_std()
        .expect("ordered");
    println!(
        "{SENDS} sends over {span:?} ({:.1}/s), busiest second {busiest}",
        SENDS as f64 / span.as_secs_f64()
    );
    let metrics = comms_runtime::metrics::render();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("comms_sender_rate_"))
    {
        println!("{line}");
    }
    assert!(
        busiest <= LIMIT + BURST,
        "the provider saw {busiest} sends in one second; the limit is {LIMIT}/s plus a burst of {BURST}"
    );
    // The limit is shared, not divided (that would be 17/s each): the three together send near
    // it. 70 % leaves room for a loaded machine; runs here measured 40 to 46/s.
    let floor = Duration::from_secs_f64(SENDS as f64 / (LIMIT as f64 * 0.7));
    assert!(
        span <= floor,
        "{SENDS} sends took {span:?}, slower than 70 % of the limit"
    );

    shutdown.cancel();
    for sender in senders {
        sender
            .await
            .expect("sender task")
            .expect("sender stops cleanly");
    }
    fleet.stop().await;
}
