//! Bad input never stalls good input and never leaks: a request the database could not store is
//! refused alone, with its reason, where an operator looks (`internal.rejected_input` and
//! `comms.dead`), while its neighbours go out without a retry; a refusal names the field and
//! what it expected but never repeats the value; a request on another channel's queue is refused.

mod corpus;
mod personal;
mod poison;
mod routing;
mod workers;

use comms_runtime::amqp::header_str;
use comms_runtime::runtime::REASON_HEADER;
use comms_tests::TestEnv;

/// Retries the consumer of `channel`'s send queue has scheduled so far.
fn retries(env: &TestEnv, channel: &str) -> u64 {
    let queue = env.topology.send_queue(channel).name;
    comms_runtime::metrics::consumer()
        .handled
        .with_label_values(&[queue.as_str(), "retry"])
        .get()
}

/// `(reason, payload)` of every row of `internal.rejected_input`, oldest first.
async fn rejected(env: &TestEnv) -> Vec<(String, Vec<u8>)> {
    sqlx::query_as("SELECT reason, payload FROM internal.rejected_input ORDER BY id")
        .fetch_all(&env.pool)
        .await
        .expect("rejected_input")
}

/// Waits until `internal.rejected_input` holds `count` rows; returns them.
async fn rejected_reach(env: &TestEnv, count: usize) -> Vec<(String, Vec<u8>)> {
    let reached = comms_tests::eventually(std::time::Duration::from_secs(30), || async {
        rejected(env).await.len() >= count
    })
    .await;
    let rows = rejected(env).await;
    assert!(reached, "{count} rejections expected, found {rows:?}");
    rows
}

/// `(body, x-comms-reason)` of the messages parked in `comms.dead` (taking them), once there
/// are `count`.
async fn dead(env: &TestEnv, count: u32) -> Vec<(Vec<u8>, String)> {
    let queue = env.topology.dead_queue();
    let parked = comms_tests::eventually(std::time::Duration::from_secs(30), || async {
        env.depth(&queue).await >= count
    })
    .await;
    assert!(parked, "{count} messages parked in comms.dead");
    env.drain(&queue)
        .await
        .into_iter()
        .map(|(body, headers)| {
            let reason = header_str(&headers, REASON_HEADER).unwrap_or_default();
            (body, reason)
        })
        .collect()
}
