//! The partial-loss check, driven with an explicit "now": a channel whose callbacks still
//! arrive, but not for a fifth of its messages, gets one owner task and no pause; below the
//! share or the minimum count, or outside the band it looks at, nothing happens.

use std::time::Duration;

use chrono::Utc;
use comms_status::{Threshold, check_partial_loss};
use comms_tests::TestEnv;

use super::seed_message;

const WINDOW: Duration = Duration::from_secs(1800);
const THRESHOLD: Threshold = Threshold {
    ratio: 0.2,
    min_messages: 20,
};

/// `count` messages of `channel` in `state`; `batch` (a digit) keeps addresses apart.
async fn seed(env: &TestEnv, channel: &str, state: &str, count: usize, batch: u8) {
    for i in 0..count {
        let (address, provider) = if channel == "sms" {
            (format!("+1415555{batch}{i:03}"), "twilio")
        } else {
            (format!("b{batch}-{i}@example.com"), "sendgrid")
        };
        seed_message(
            &env.pool,
            channel,
            &address,
            state,
            Some(provider),
            Some(&format!("id-{batch}-{i}")),
        )
        .await;
    }
}

async fn open_tasks(env: &TestEnv) -> Vec<(String, String)> {
    sqlx::query_as("SELECT title, reason FROM comms.tasks WHERE state = 'open' ORDER BY title")
        .fetch_all(&env.pool)
        .await
        .expect("tasks")
}

#[tokio::test]
async fn a_channel_missing_a_fifth_of_its_statuses_gets_one_task_and_no_pause() {
    let env = TestEnv::new().await;
    seed(&env, "sms", "delivered", 17, 1).await;
    seed(&env, "sms", "sent", 3, 2).await;
    // Email: every status missing, but too few messages to judge.
    seed(&env, "email", "sent", 5, 3).await;
    // The band is one to two windows before "now": these messages, dispatched now, are in it.
    let now = Utc::now() + chrono::Duration::minutes(45);

    // 3 of 20 missing: under the share.
    let found = check_partial_loss(&env.pool, WINDOW, THRESHOLD, "on-call", now)
        .await
        .expect("check");
    assert!(found.is_empty(), "{found:?}");
    assert!(open_tasks(&env).await.is_empty());

    // 5 of 22 missing: over it, one task for SMS.
    seed(&env, "sms", "sent", 2, 4).await;
    let found = check_partial_loss(&env.pool, WINDOW, THRESHOLD, "on-call", now)
        .await
        .expect("check");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (
            found[0].channel.as_str(),
            found[0].dispatched,
            found[0].missing
        ),
        ("sms", 22, 5)
    );
    assert!(found[0].task_opened);
    let tasks = open_tasks(&env).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        tasks[0].0,
        "Channel sms: delivery status missing for part of its messages"
    );
    assert!(tasks[0].1.contains("5 of 22"), "{}", tasks[0].1);
    assert!(!tasks[0].1.contains("+1415"), "no address in the task");

    // Still over the share at the next tick: the open task is not repeated.
    let again = check_partial_loss(&env.pool, WINDOW, THRESHOLD, "on-call", now)
        .await
        .expect("check");
    assert_eq!(again.len(), 1);
    assert!(!again[0].task_opened);
    assert_eq!(open_tasks(&env).await.len(), 1);

    // No pause: callbacks still flow.
    let pauses: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.pauses")
        .fetch_one(&env.pool)
        .await
        .expect("pauses");
    assert_eq!(pauses, 0);

    // Within the first window the messages are too young to judge; after two they are out of
    // the band.
    for moment in [
        Utc::now() + chrono::Duration::minutes(10),
        Utc::now() + chrono::Duration::minutes(70),
    ] {
        let found = check_partial_loss(&env.pool, WINDOW, THRESHOLD, "on-call", moment)
            .await
            .expect("check");
        assert!(found.is_empty(), "{moment}: {found:?}");
    }
}
