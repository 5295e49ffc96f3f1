//! `BENCH_ONLY=release`: after a pause, how fast do the held messages go out, against live
//! sending measured in the same run?
//!
//! One sender drains `BENCH_MESSAGES` pre-published requests (the live rate), before the pause
//! and again after the release: the live rate is the mean of the two, so the machine drifting
//! between the phases moves the ratio less. In between a global pause is committed, `BENCH_HELD` requests (100 000 by default) are published and the same
//! kind of sender holds every one; the pause is lifted and the release rate is the held count
//! over the time from the resume's commit to the last of them recorded `sent`. The run fails
//! unless every held message is sent exactly once (one `dispatching` event each).
//!
//! Released messages keep their creation order per recipient, so the figure depends on how many
//! held messages each recipient has: `BENCH_RELEASE_RECIPIENTS` (1 000 by default, 100 held
//! messages each at 100 000) spreads them over that many addresses.

use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_domain::pause::Scope;
use comms_domain::pause::store::{self, PauseRequest};

use crate::load::Bench;
use crate::stats::Row;

/// What one release run measured.
pub struct Release {
    pub held: usize,
    pub recipients: usize,
    /// The mean of the live rates before the pause and after the release.
    pub live_rate: f64,
    pub live_before: f64,
    pub live_after: f64,
    pub release_rate: f64,
    pub seconds: f64,
    pub rss: String,
}

pub async fn measure(
    bench: &Bench,
    live: usize,
    held: usize,
    recipients: usize,
) -> anyhow::Result<Release> {
    let (live_before, _) = crate::send_phase::throughput_named(bench, "rl-live-", live, 1).await?;
    println!("live send before the pause, 1 sender, {live} msgs: {live_before:.0} msg/s");
    let since = bench.db_now().await?;
    store::pause(
        &bench.pool,
        &PauseRequest {
            scope: Scope::Global,
            reason: "bench: release after resume".into(),
            actor: "bench".into(),
            expires_at: None,
            automatic: false,
        },
    )
    .await?;
    let requests: Vec<_> = (0..held)
        .map(|i| {
            spread(
                bench.request(&format!("rl-held-{i:07}"), i, 0),
                i,
                recipients,
            )
        })
        .collect::<anyhow::Result<_>>()?;
    bench.publish_bulk(&requests).await?;
    let senders = crate::send_phase::start_senders(bench, 1)?;
    let waited = async {
        wait_state(bench, "held", held, Duration::from_secs(900)).await?;
        store::resume(&bench.pool, &Scope::Global, "bench", "bench").await?;
        let resumed: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&bench.pool)
            .await?;
        bench
            .wait_sent("rl-held-", since, held, Duration::from_secs(1800))
            .await?;
        anyhow::Ok(resumed)
    }
    .await;
    let rss = crate::send_phase::stop_senders(senders).await;
    let resumed = waited?;
    let (last, dispatches): (DateTime<Utc>, i64) = sqlx::query_as(
        "SELECT max(m.dispatched_at),
                (SELECT count(*) FROM comms.message_events e JOIN comms.messages x ON x.id = e.message_id
                 WHERE x.idempotency_key LIKE 'rl-held-%' AND e.event_type = 'dispatching')
         FROM comms.messages m WHERE m.idempotency_key LIKE 'rl-held-%'",
    )
    .fetch_one(&bench.pool)
    .await?;
    anyhow::ensure!(
        dispatches as usize == held,
        "{dispatches} dispatches for {held} held messages: each must be sent exactly once"
    );
    let seconds = (last - resumed).num_milliseconds().max(1) as f64 / 1000.0;
    let (live_after, _) = crate::send_phase::throughput_named(bench, "rl-after-", live, 1).await?;
    println!("live send after the release, 1 sender, {live} msgs: {live_after:.0} msg/s");
    Ok(Release {
        held,
        recipients,
        live_rate: (live_before + live_after) / 2.0,
        live_before,
        live_after,
        release_rate: held as f64 / seconds,
        seconds,
        rss,
    })
}

/// The request addressed to one of `recipients` addresses (recipient `i % recipients`): how many
/// held messages each recipient has decides how much the per-recipient order costs.
fn spread(
    (routing_key, body): (String, Vec<u8>),
    i: usize,
    recipients: usize,
) -> anyhow::Result<(String, Vec<u8>)> {
    let mut request: serde_json::Value = serde_json::from_slice(&body)?;
    let n = i % recipients.max(1);
    request["recipient"] = if routing_key == "send.sms" {
        // +1 415 555-0000 … 564-9999: valid numbers for 100 000 recipients.
        serde_json::json!({ "phone": format!("+1415{}{:04}", 555 + n / 10_000 % 10, n % 10_000) })
    } else {
        serde_json::json!({ "email": format!("held{n}@example.com") })
    };
    Ok((routing_key, serde_json::to_vec(&request)?))
}

/// Waits until `count` messages of this run are in `state`.
async fn wait_state(
    bench: &Bench,
    state: &str,
    count: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let now: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM comms.messages
             WHERE delivery_state = $1 AND idempotency_key LIKE 'rl-held-%'",
        )
        .bind(state)
        .fetch_one(&bench.pool)
        .await?;
        if now as usize >= count {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {now} of {count} messages reached `{state}` within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn row(run: &Release) -> Row {
    Row {
        scenario: format!(
            "release after resume, {} held for {} recipients, 1 sender (vs live sending of the same run)",
            run.held, run.recipients
        ),
        throughput: Some(run.release_rate),
        unit: "msg/s",
        ratio: Some(run.release_rate / run.live_rate),
        p50_ms: None,
        p99_ms: None,
        rss: run.rss.clone(),
    }
}
