//! The pause switch against the real broker, database and sandbox: nothing covered goes out
//! once a pause is applied, nothing is lost, and everything held goes out exactly once after.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use comms_domain::pause::Scope;
use comms_domain::pause::store::{self, PauseRequest};
use comms_domain::pause::switch::PauseSwitch;
use comms_runtime::clock::SystemClock;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_sandbox::FaultSpec;
use comms_tests::eventually;
use comms_tests::fleet::{SendFleet, sms_request};
use comms_tests::proxy::Proxy;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

mod autoscaling;
mod release_order;

async fn fleet(overrides: &[(&str, &str)]) -> SendFleet {
    let fleet = SendFleet::start(overrides).await;
    fleet
        .approved_template("note", "sms", None, "note {{ key }}")
        .await;
    fleet
        .approved_template("mail", "email", Some("note"), "note {{ key }}")
        .await;
    fleet
}

fn note(key: &str, phone: &str, client: uuid::Uuid) -> serde_json::Value {
    let mut request = sms_request(key, phone, client);
    request["template"] = json!({ "name": "note", "vars": { "key": key } });
    request
}

async fn count_state(fleet: &SendFleet, state: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM comms.messages WHERE delivery_state = $1")
        .bind(state)
        .fetch_one(&fleet.env.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_global_pause_mid_stream_stops_everything_and_resume_sends_each_message_once() {
    let fleet = fleet(&[]).await;
    const TOTAL: usize = 2000;
    for i in 0..TOTAL {
        fleet
            .send(&note(
                &format!("m{i:04}"),
                &format!("+1415555{i:04}"),
                fleet.client_id,
            ))
            .await;
    }
    let sandbox = fleet.sandbox();
    assert!(
        eventually(WAIT, || async {
            sandbox.messages().await.map(|m| m.len()).unwrap_or(0) >= 200
        })
        .await
    );

    fleet.pause(Scope::Global, None).await;
    let at_pause = sandbox.messages().await.expect("sandbox").len();
    assert!(at_pause < TOTAL, "the pause landed mid-stream");
    // Every message is now either sent (before the pause) or held; the queue drains.
    assert!(
        eventually(WAIT, || async {
            count_state(&fleet, "sent").await + count_state(&fleet, "held").await == TOTAL as i64
        })
        .await
    );
    assert_eq!(
        sandbox.messages().await.expect("sandbox").len(),
        at_pause,
        "nothing went out after the pause was applied"
    );
    assert_eq!(count_state(&fleet, "sent").await, at_pause as i64);
    let attempts_of_held: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(attempt_count), 0) FROM comms.messages WHERE delivery_state = 'held'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("attempts");
    assert_eq!(attempts_of_held, 0, "a hold is not an attempt");

    fleet.resume(Scope::Global).await;
    // Released in batches and sent through the sender's group path; on a loaded 2-core machine
    // 2,000 of them can still take a while.
    assert!(
        eventually(WAIT * 3, || async {
            count_state(&fleet, "sent").await == TOTAL as i64
        })
        .await,
        "every held message is sent after the resume"
    );
    let delivered = sandbox.messages().await.expect("sandbox");
    let unique: HashSet<&str> = delivered.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(delivered.len(), TOTAL, "every message arrived exactly once");
    assert_eq!(unique.len(), TOTAL);
    // Released messages are claimed together (the group path): a group's claim is one
    // statement, so its `dispatching` events share a transaction time; the one-message path
    // claims each message in a transaction of its own.
    let (released, claimed_together): (i64, i64) = sqlx::query_as(
        "WITH d AS (
             SELECT DISTINCT ON (e.message_id) e.message_id, e.occurred_at
             FROM comms.message_events e JOIN comms.messages m ON m.id = e.message_id
             WHERE e.event_type = 'dispatching' AND m.held_by_pause IS NOT NULL
             ORDER BY e.message_id, e.occurred_at DESC)
         SELECT count(*), count(*) FILTER (WHERE EXISTS (
             SELECT 1 FROM d o WHERE o.occurred_at = d.occurred_at AND o.message_id <> d.message_id))
         FROM d",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("claims");
    assert_eq!(
        released,
        (TOTAL - at_pause) as i64,
        "every released message dispatched"
    );
    assert!(
        claimed_together * 2 > released,
        "most released messages took the group path: {claimed_together} of {released}"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn channel_and_client_scopes_hold_only_what_they_cover() {
    let fleet = fleet(&[]).await;
    let other_client: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO comms.clients (name, owner) VALUES ('Other', 'bo') RETURNING id",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("client");
    fleet.pause(Scope::Channel("email".into()), None).await;
    fleet.pause(Scope::Client(other_client), None).await;
    // A client or sequence the fleet does not know is a typo: refused, so it never looks like a
    // working pause.
    for typo in [
        Scope::Client(uuid::Uuid::new_v4()),
        Scope::Sequence("no-such-sequence".into()),
    ] {
        let request = comms_domain::pause::store::PauseRequest {
            scope: typo.clone(),
            reason: "typo".into(),
            actor: "oncall".into(),
            automatic: false,
            expires_at: None,
        };
        let refused = comms_domain::pause::store::pause(&fleet.env.pool, &request).await;
        assert!(
            matches!(&refused, Err(comms_domain::pause::store::PauseError::UnknownTarget(s)) if *s == typo),
            "{typo}: {refused:?}"
        );
    }
    // So is a length that ends before it starts (`--for 0s`) or a year and more away.
    for expires_at in [
        chrono::Utc::now(),
        chrono::Utc::now() + chrono::Duration::days(400),
    ] {
        let request = comms_domain::pause::store::PauseRequest {
            scope: Scope::Channel("sms".into()),
            reason: "length".into(),
            actor: "oncall".into(),
            automatic: false,
            expires_at: Some(expires_at),
        };
        let refused = comms_domain::pause::store::pause(&fleet.env.pool, &request).await;
        assert!(
            matches!(
                refused,
                Err(comms_domain::pause::store::PauseError::InvalidExpiry)
            ),
            "{refused:?}"
        );
    }

    fleet
        .send(&note("sms-ours", "+14155550201", fleet.client_id))
        .await;
    fleet
        .send(&note("sms-theirs", "+14155550202", other_client))
        .await;
    let mut email = note("email-ours", "+14155550203", fleet.client_id);
    email["channel"] = json!("email");
    email["recipient"] = json!({ "email": "dana@example.com" });
    email["template"]["name"] = json!("mail");
    fleet.send(&email).await;

    assert!(fleet.reaches("sms-ours", "sent").await);
    assert!(fleet.reaches("sms-theirs", "held").await);
    assert!(fleet.reaches("email-ours", "held").await);
    assert_eq!(fleet.sandbox().messages().await.expect("sandbox").len(), 1);
    fleet.stop().await;
}

#[tokio::test]
async fn a_pause_with_an_expiry_resumes_by_itself_and_says_so() {
    let fleet = fleet(&[("COMMS__PAUSE__POLL_INTERVAL", "200ms")]).await;
    let expires = chrono::Utc::now() + chrono::Duration::seconds(2);
    fleet.pause(Scope::Global, Some(expires)).await;
    fleet
        .send(&note("later", "+14155550301", fleet.client_id))
        .await;
    assert!(fleet.reaches("later", "held").await);
    assert!(
        fleet.reaches("later", "sent").await,
        "released after the expiry"
    );
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM comms.pause_events ORDER BY id")
            .fetch_all(&fleet.env.pool)
            .await
            .expect("history");
    assert_eq!(actions, ["pause", "expire"]);
    assert_eq!(
        fleet.timeline("later").await,
        ["received", "held", "released", "dispatching", "sent"]
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_worker_started_while_paused_sends_nothing() {
    let mut fleet = SendFleet::without_sender(&[]).await;
    fleet
        .approved_template("note", "sms", None, "note {{ key }}")
        .await;
    store::pause(
        &fleet.env.pool,
        &PauseRequest {
            scope: Scope::Global,
            reason: "incident".into(),
            actor: "oncall".into(),
            expires_at: None,
            automatic: false,
        },
    )
    .await
    .expect("pause");
    fleet
        .send(&note("early", "+14155550401", fleet.client_id))
        .await;
    fleet.start_sender();
    assert!(fleet.reaches("early", "held").await);
    assert!(
        fleet
            .sandbox()
            .messages()
            .await
            .expect("sandbox")
            .is_empty()
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_retry_that_comes_due_while_paused_is_held_not_sent() {
    let fleet = fleet(&[]).await;
    fleet
        .sandbox()
        .add_fault(&FaultSpec {
            status: Some(500),
            times: Some(1),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    fleet
        .send(&note("retry-held", "+14155550501", fleet.client_id))
        .await;
    assert!(fleet.reaches("retry-held", "retrying").await);
    fleet.pause(Scope::Global, None).await;
    assert!(fleet.reaches("retry-held", "held").await);
    assert!(
        fleet
            .sandbox()
            .messages()
            .await
            .expect("sandbox")
            .is_empty()
    );
    fleet.resume(Scope::Global).await;
    assert!(fleet.reaches("retry-held", "sent").await);
    assert_eq!(fleet.sandbox().messages().await.expect("sandbox").len(), 1);
    fleet.stop().await;
}

#[tokio::test]
async fn held_messages_to_one_recipient_are_released_in_the_order_they_were_created() {
    let fleet = fleet(&[]).await;
    fleet.pause(Scope::Global, None).await;
    for i in 0..6 {
        let key = format!("order-{i}");
        fleet
            .send(&note(&key, "+14155550601", fleet.client_id))
            .await;
        assert!(fleet.reaches(&key, "held").await);
    }
    fleet.resume(Scope::Global).await;
    let sandbox = fleet.sandbox();
    let delivered = sandbox.wait_for_messages(6, WAIT).await.expect("all six");
    let bodies: Vec<&str> = delivered.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "note order-0",
            "note order-1",
            "note order-2",
            "note order-3",
            "note order-4",
            "note order-5"
        ]
    );
    fleet.stop().await;
}

#[tokio::test]
async fn the_circuit_breaker_pauses_a_failing_channel_for_a_person_to_resume() {
    let fleet = fleet(&[("COMMS__PAUSE__BREAKER_FAILURES", "3")]).await;
    fleet
        .sandbox()
        .add_fault(&FaultSpec {
            status: Some(500),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    for i in 0..3 {
        fleet
            .send(&note(
                &format!("fail-{i}"),
                &format!("+1415555070{i}"),
                fleet.client_id,
            ))
            .await;
    }
    let scope = Scope::Channel("sms".into());
    assert!(
        eventually(WAIT, || async {
            fleet
                .switch
                .active()
                .iter()
                .any(|p| p.scope == scope && p.automatic)
        })
        .await
    );
    let pause = fleet
        .switch
        .active()
        .into_iter()
        .find(|p| p.scope == scope)
        .expect("pause");
    assert!(
        pause.reason.starts_with("automatic: provider failing"),
        "{}",
        pause.reason
    );
    assert_eq!(pause.expires_at, None, "it waits for a recorded decision");
    let tasks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.tasks WHERE owner = 'on-call' AND state = 'open'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("tasks");
    assert_eq!(tasks, 1);
    fleet
        .send(&note("after-breaker", "+14155550799", fleet.client_id))
        .await;
    assert!(fleet.reaches("after-breaker", "held").await);
    fleet.stop().await;
}

#[tokio::test]
async fn a_worker_blind_to_the_switch_stops_sending_and_reports_not_ready_until_it_sees_again() {
    let fleet = fleet(&[]).await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().expect("address")).await;
    let mut settings = (*fleet.env.settings).clone();
    {
        use secrecy::ExposeSecret;
        let url = settings
            .database
            .url
            .expose_secret()
            .replace("127.0.0.1:5432", &proxy.addr.to_string());
        settings.database.url = url.into();
    }
    settings.pause.max_staleness = Duration::from_secs(1);
    settings.pause.poll_interval = Duration::from_millis(200);
    settings.database.acquire_timeout = Duration::from_millis(500);
    let settings = Arc::new(settings);
    // A second sender, whose only road to PostgreSQL is the proxy.
    let pool = comms_runtime::db::connect_lazy(&settings.database).expect("pool");
    let runtime = Runtime::new(settings, pool);
    let health = runtime.health.clone();
    let switch = PauseSwitch::new(Duration::from_secs(1));
    let shutdown = Shutdown::new();
    let blind_sender = tokio::spawn(comms_sender::run_with_switch(
        runtime,
        Arc::new(SystemClock),
        switch.clone(),
        shutdown.clone(),
    ));
    assert!(eventually(WAIT, || async { !switch.is_blind() }).await);
    proxy.cut();
    assert!(eventually(WAIT, || async { switch.is_blind() }).await);
    assert!(
        matches!(
            switch.verdict("sms", "transactional", None),
            comms_domain::pause::switch::Verdict::Blind { .. }
        ),
        "a blind worker refuses every dispatch"
    );
    // Readiness follows on the watcher's next report.
    assert!(
        eventually(WAIT, || async {
            let readiness = health.readiness().await;
            !readiness.ready
                && readiness
                    .checks
                    .get("pause-switch")
                    .is_some_and(|c| !c.ok && c.detail.starts_with("blind"))
        })
        .await,
        "a blind worker reports not-ready, saying it is blind"
    );

    proxy.restore();
    assert!(
        eventually(WAIT, || async { !switch.is_blind() }).await,
        "it sees again after the outage"
    );
    assert!(
        eventually(WAIT, || async {
            health
                .readiness()
                .await
                .checks
                .get("pause-switch")
                .is_some_and(|c| c.ok)
        })
        .await
    );
    assert_eq!(
        switch.verdict("sms", "transactional", None),
        comms_domain::pause::switch::Verdict::Clear
    );
    shutdown.cancel();
    blind_sender.await.expect("task").expect("stops");
    fleet.stop().await;
}
