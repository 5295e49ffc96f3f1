//! The provider freshness watchdog, driven with an explicit "now": a channel whose sent messages
//! have heard nothing for longer than the window is paused once, automatically, with a task and
//! a notification; fresh callbacks, an existing pause, or a later resume keep it running.

use std::time::Duration;

use chrono::Utc;
use comms_domain::pause::Scope;
use comms_domain::pause::store as pause_store;
use comms_status::{FRESHNESS_REASON, check_freshness};
use comms_tests::TestEnv;
use sqlx::postgres::PgListener;

use super::seed_message;

const WINDOW: Duration = Duration::from_secs(1800);

async fn count(env: &TestEnv, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&env.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_channel_with_stale_sent_messages_is_paused_once_with_a_task_and_a_notification() {
    let env = TestEnv::new().await;
    seed_message(
        &env.pool,
        "sms",
        "+14155550201",
        "sent",
        Some("twilio"),
        Some("SMstale1"),
    )
    .await;
    seed_message(
        &env.pool,
        "sms",
        "+14155550202",
        "sent",
        Some("twilio"),
        Some("SMstale2"),
    )
    .await;
    // Email has a message too, but it already has its outcome.
    seed_message(
        &env.pool,
        "email",
        "ok@example.com",
        "delivered",
        Some("sendgrid"),
        Some("XM1"),
    )
    .await;
    let mut listener = PgListener::connect_with(&env.pool).await.expect("listener");
    listener.listen("comms_pause").await.expect("listen");

    // Within the window nothing happens.
    let soon = Utc::now() + chrono::Duration::minutes(10);
    assert!(
        check_freshness(&env.pool, WINDOW, "on-call", soon)
            .await
            .expect("check")
            .is_empty()
    );

    let later = Utc::now() + chrono::Duration::hours(2);
    let paused = check_freshness(&env.pool, WINDOW, "on-call", later)
        .await
        .expect("check");
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].channel, "sms");
    assert_eq!(paused[0].stale_messages, 2);
    let (scope, value, reason, actor, automatic): (String, String, String, String, bool) =
        sqlx::query_as("SELECT scope, scope_value, reason, actor, automatic FROM comms.pauses")
            .fetch_one(&env.pool)
            .await
            .expect("one pause");
    assert_eq!((scope.as_str(), value.as_str()), ("channel", "sms"));
    assert_eq!(reason, FRESHNESS_REASON);
    assert_eq!(reason, "automatic: provider freshness uncertain");
    assert_eq!(actor, "comms-status");
    assert!(automatic);
    let (action, event_reason): (String, String) =
        sqlx::query_as("SELECT action, reason FROM comms.pause_events")
            .fetch_one(&env.pool)
            .await
            .expect("one pause event");
    assert_eq!(
        (action.as_str(), event_reason.as_str()),
        ("pause", FRESHNESS_REASON)
    );
    let (owner, next_action): (String, String) =
        sqlx::query_as("SELECT owner, next_action FROM comms.tasks")
            .fetch_one(&env.pool)
            .await
            .expect("one task");
    assert_eq!(owner, "on-call");
    assert!(next_action.contains("resume"), "{next_action}");
    let notified = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await;
    assert!(
        matches!(notified, Ok(Ok(_))),
        "a comms_pause notification was sent"
    );

    // Checked again: the channel is already paused, nothing more happens.
    let again = check_freshness(&env.pool, WINDOW, "on-call", later)
        .await
        .expect("check");
    assert!(again.is_empty());
    assert_eq!(count(&env, "SELECT count(*) FROM comms.pauses").await, 1);
    assert_eq!(
        count(&env, "SELECT count(*) FROM comms.pause_events").await,
        1
    );
    assert_eq!(count(&env, "SELECT count(*) FROM comms.tasks").await, 1);

    // After on-call resumes, the same old messages do not pause it again.
    pause_store::resume(
        &env.pool,
        &Scope::Channel("sms".into()),
        "provider fine",
        "oncall",
    )
    .await
    .expect("resume");
    let after_resume = check_freshness(&env.pool, WINDOW, "on-call", later)
        .await
        .expect("check");
    assert!(after_resume.is_empty());
    env.teardown().await;
}

#[tokio::test]
async fn a_recent_callback_on_the_channel_keeps_it_running() {
    let env = TestEnv::new().await;
    let stale = seed_message(
        &env.pool,
        "email",
        "a@example.com",
        "sent",
        Some("sendgrid"),
        Some("XMa"),
    )
    .await;
    let later = Utc::now() + chrono::Duration::hours(2);
    sqlx::query(
        "INSERT INTO comms.delivery_callbacks (provider, event_key, message_id, channel, status, received_at)
         VALUES ('sendgrid', 'recent', $1, 'email', 'processed', $2)",
    )
    .bind(stale.id)
    .bind(later - chrono::Duration::minutes(5))
    .execute(&env.pool)
    .await
    .expect("callback");
    assert!(
        check_freshness(&env.pool, WINDOW, "on-call", later)
            .await
            .expect("check")
            .is_empty()
    );
    // Without that callback the channel would have been paused, for the owner named.
    let much_later = later + chrono::Duration::hours(1);
    let paused = check_freshness(&env.pool, WINDOW, "email-team", much_later)
        .await
        .expect("check");
    assert_eq!(paused.len(), 1);
    let owner: String = sqlx::query_scalar("SELECT owner FROM comms.tasks")
        .fetch_one(&env.pool)
        .await
        .expect("task");
    assert_eq!(owner, "email-team");
    env.teardown().await;
}

#[tokio::test]
async fn an_existing_pause_or_a_provider_without_callbacks_is_left_alone() {
    let env = TestEnv::new().await;
    seed_message(
        &env.pool,
        "sms",
        "+14155550203",
        "sent",
        Some("twilio"),
        Some("SMp"),
    )
    .await;
    // The portal "provider" never calls back: its sent messages say nothing about freshness.
    seed_message(
        &env.pool,
        "portal",
        "portal-contact",
        "sent",
        Some("portal"),
        Some("p-1"),
    )
    .await;
    sqlx::query(
        "INSERT INTO comms.pauses (scope, scope_value, reason, actor) VALUES ('channel', 'sms', 'maintenance', 'oncall')",
    )
    .execute(&env.pool)
    .await
    .expect("manual pause");
    let later = Utc::now() + chrono::Duration::hours(2);
    assert!(
        check_freshness(&env.pool, WINDOW, "on-call", later)
            .await
            .expect("check")
            .is_empty()
    );
    let automatic: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.pauses WHERE automatic")
        .fetch_one(&env.pool)
        .await
        .expect("count");
    assert_eq!(automatic, 0);
    env.teardown().await;
}
