//! Provider failover against two sandbox instances, each a Twilio account of its own: an outage
//! of the first one mid-stream loses nothing and doubles nothing (every key is found exactly once
//! across both sandboxes' records), the traffic moves to the second and comes back to the first
//! once it recovers; a message whose outcome at the first is unknown is never sent through the
//! second (docs/reliability.md#provider-failover).

use std::collections::HashMap;
use std::time::Duration;

use comms_sandbox::{FaultSpec, RunningSandbox, SandboxClient, SandboxConfig};
use comms_tests::eventually;
use comms_tests::fleet::{SendFleet, sms_request};

const SECOND_SID: &str = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const SECOND_TOKEN: &str = "second-sandbox-token";
const EPISODE_TASK: &str = "sms failed over from its first provider";
const WAIT: Duration = Duration::from_secs(60);

/// The second Twilio account: a sandbox that accepts only its own SID and token.
async fn second_sandbox() -> RunningSandbox {
    let mut config = SandboxConfig::generated().expect("signing key");
    config.twilio_account_sid = SECOND_SID.into();
    config.twilio_auth_token = SECOND_TOKEN.into();
    RunningSandbox::start(config).await.expect("second sandbox")
}

/// A sender with `twilio` (the fleet's own sandbox) then `twilio_secondary` (`second`).
async fn fleet(second: &RunningSandbox, extra: &[(&str, &str)]) -> SendFleet {
    let url = second.base_url();
    let mut overrides = vec![
        ("COMMS__PROVIDERS__SMS_ORDER", "twilio,twilio_secondary"),
        ("COMMS__PROVIDERS__TWILIO_SECONDARY__BASE_URL", url.as_str()),
        (
            "COMMS__PROVIDERS__TWILIO_SECONDARY__ACCOUNT_SID",
            SECOND_SID,
        ),
        (
            "COMMS__PROVIDERS__TWILIO_SECONDARY__AUTH_TOKEN",
            SECOND_TOKEN,
        ),
        ("COMMS__PROVIDERS__TWILIO_SECONDARY__FROM", "+15005550007"),
        ("COMMS__SENDER__MAX_ATTEMPTS", "10"),
    ];
    overrides.extend_from_slice(extra);
    let fleet = SendFleet::start(&overrides).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}")
        .await;
    fleet
}

fn phone(i: usize) -> String {
    format!("+1415555{i:04}")
}

/// Sends keys `from..to` (each to a number of its own) and waits until every one is `sent`.
async fn send_all(fleet: &SendFleet, range: std::ops::Range<usize>) {
    for i in range.clone() {
        fleet
            .send(&sms_request(&format!("fo-{i}"), &phone(i), fleet.client_id))
            .await;
    }
    for i in range {
        let key = format!("fo-{i}");
        assert!(
            eventually(WAIT, || async {
                fleet.state(&key).await.as_deref() == Some("sent")
            })
            .await,
            "{key} was sent; its timeline: {:?}",
            timeline(fleet, &key).await
        );
    }
}

/// `(event, reason)` of a message's timeline, for a failure's message.
async fn timeline(fleet: &SendFleet, key: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT e.event_type, e.reason FROM comms.message_events e
         JOIN comms.messages m ON m.id = e.message_id WHERE m.idempotency_key = $1 ORDER BY e.id",
    )
    .bind(key)
    .fetch_all(&fleet.env.pool)
    .await
    .expect("timeline")
}

/// How many times each number was accepted by `sandbox`.
async fn accepted(sandbox: &SandboxClient) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for message in sandbox.messages().await.expect("sandbox records") {
        *counts.entry(message.to).or_insert(0) += 1;
    }
    counts
}

async fn open_episode_tasks(fleet: &SendFleet) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM comms.tasks WHERE owner = 'on-call' AND title = $1 AND state = 'open'",
    )
    .bind(EPISODE_TASK)
    .fetch_one(&fleet.env.pool)
    .await
    .expect("tasks")
}

#[tokio::test]
async fn an_outage_of_the_first_provider_moves_the_traffic_and_it_comes_back() {
    let second = second_sandbox().await;
    let fleet = fleet(&second, &[("COMMS__PROVIDERS__FAILBACK_AFTER", "1s")]).await;
    let (first, backup) = (fleet.sandbox(), second.client());

    // Healthy: the first account takes everything.
    send_all(&fleet, 0..10).await;
    assert_eq!(accepted(&first).await.len(), 10);
    assert!(accepted(&backup).await.is_empty());

    // The first account answers 500 to everything, mid-stream.
    first
        .add_fault(&FaultSpec {
            status: Some(500),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    send_all(&fleet, 10..40).await;
    let during = accepted(&backup).await;
    assert!(!during.is_empty(), "the second account took the traffic");
    assert_eq!(open_episode_tasks(&fleet).await, 1, "one task for on-call");

    // Recovered: a probe finds it healthy and the traffic comes back, one message at a time
    // until one lands there (bounded).
    first.clear_faults().await.expect("clear");
    let mut next = 40;
    let back = eventually(WAIT, || {
        let i = next;
        next += 1;
        let fleet = &fleet;
        let first = &first;
        async move {
            send_all(fleet, i..i + 1).await;
            accepted(first).await.contains_key(&phone(i))
        }
    })
    .await;
    assert!(back, "the first account has the traffic again");
    // Once back, the next messages all go to the first account.
    send_all(&fleet, next..next + 10).await;
    let at_first = accepted(&first).await;
    for i in next..next + 10 {
        assert!(
            at_first.contains_key(&phone(i)),
            "fo-{i} went to the first account"
        );
    }

    // Nothing lost, nothing doubled: every key exactly once across both accounts.
    let total = next + 10;
    let at_second = accepted(&backup).await;
    for i in 0..total {
        let n = at_first.get(&phone(i)).copied().unwrap_or(0)
            + at_second.get(&phone(i)).copied().unwrap_or(0);
        assert_eq!(n, 1, "fo-{i} accepted {n} times across both accounts");
    }
    assert_eq!(
        at_first.values().sum::<usize>() + at_second.values().sum::<usize>(),
        total
    );

    // The messages say which account sent them; callbacks still find them by provider and SID.
    let failed_over: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.recipient_address, m.provider FROM comms.messages m
         JOIN comms.message_events e ON e.message_id = m.id AND e.event_type = 'sent'
         WHERE e.detail->>'provider' = 'twilio_secondary'",
    )
    .fetch_all(&fleet.env.pool)
    .await
    .expect("sent events");
    assert_eq!(failed_over.len(), at_second.len());
    assert!(
        failed_over
            .iter()
            .all(|(to, provider)| provider == "twilio" && at_second.contains_key(to))
    );
    let dispatching: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.message_events
         WHERE event_type = 'dispatching' AND detail->>'failover_from' = 'twilio'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("events");
    assert!(dispatching >= at_second.len() as i64);
    // The episode is over, but its task stays for on-call to close: still exactly one.
    assert_eq!(open_episode_tasks(&fleet).await, 1);
    let metrics = comms_runtime::metrics::render();
    assert!(
        metrics.contains(
            "comms_sender_failover_total{channel=\"sms\",from=\"twilio\",to=\"twilio_secondary\"}"
        ),
        "failover counted"
    );
    assert!(
        metrics.contains(
            "comms_sender_failover_total{channel=\"sms\",from=\"twilio_secondary\",to=\"twilio\"}"
        ),
        "failback counted"
    );
    fleet.stop().await;
    let _ = second.shutdown().await;
}

#[tokio::test]
async fn a_first_provider_refusing_connections_sends_everything_through_the_second() {
    let (_refusing, closed) = comms_tests::refusing_url();
    let second = second_sandbox().await;
    let fleet = fleet(&second, &[("COMMS__PROVIDERS__TWILIO__BASE_URL", &closed)]).await;
    send_all(&fleet, 0..15).await;
    let at_second = accepted(&second.client()).await;
    assert_eq!(at_second.len(), 15);
    assert!(at_second.values().all(|n| *n == 1));
    assert_eq!(open_episode_tasks(&fleet).await, 1);
    fleet.stop().await;
    let _ = second.shutdown().await;
}

#[tokio::test]
async fn a_message_whose_outcome_at_the_first_is_unknown_never_goes_to_the_second() {
    let second = second_sandbox().await;
    // No probe within the test: the first account stays failed over. A provider timeout of 5 s,
    // so that on a loaded machine the call is connected (and sent) before it times out: a call
    // that times out while still connecting sent nothing and rightly goes to the second.
    let fleet = fleet(
        &second,
        &[
            ("COMMS__PROVIDERS__FAILBACK_AFTER", "10m"),
            ("COMMS__SENDER__PROVIDER_TIMEOUT", "5s"),
        ],
    )
    .await;
    let first = fleet.sandbox();
    let unsure = "+14155550999";
    // Its call hangs past the provider timeout (5 s): it may have been accepted.
    first
        .add_fault(&FaultSpec {
            recipient: Some(unsure.into()),
            timeout_ms: Some(7_000),
            times: Some(1),
            ..FaultSpec::default()
        })
        .await
        .expect("hang");
    fleet
        .send(&sms_request("unsure", unsure, fleet.client_id))
        .await;
    // Its call is under way at the first account before the outage starts (otherwise it would
    // rightly go to the second, having reached nothing).
    assert!(fleet.reaches("unsure", "sending").await);
    // And the first account fails for everyone else: the traffic moves to the second.
    first
        .add_fault(&FaultSpec {
            status: Some(500),
            ..FaultSpec::default()
        })
        .await
        .expect("outage");
    send_all(&fleet, 0..5).await;
    let at_second = accepted(&second.client()).await;
    assert!(
        !at_second.contains_key(unsure),
        "never through the second: {:?}",
        fleet.timeline("unsure").await
    );
    assert_eq!(at_second.len(), 5);
    // Pinned to the first account for its wait (3 × 5 s + 5 s), then
    // failed as unknown for its owner: never sent through the second.
    assert!(fleet.reaches("unsure", "failed").await);
    let (reason, _) = fleet.failure("unsure").await;
    assert_eq!(reason.as_deref(), Some("dispatch_outcome_unknown"));
    assert_eq!(fleet.open_tasks("unsure").await, 1);
    assert!(!accepted(&second.client()).await.contains_key(unsure));
    let timeline = fleet.timeline("unsure").await;
    assert!(
        timeline.contains(&"retry_scheduled".to_string()),
        "{timeline:?}"
    );
    fleet.stop().await;
    let _ = second.shutdown().await;
}

#[tokio::test]
async fn email_fails_over_from_sendgrid_to_the_smtp_relay() {
    let sink = comms_tests::smtp_sink::SmtpSink::start().await;
    let port = sink.port().to_string();
    let fleet = SendFleet::start(&[
        ("COMMS__PROVIDERS__EMAIL_ORDER", "sendgrid,smtp"),
        ("COMMS__PROVIDERS__SMTP__HOST", "127.0.0.1"),
        ("COMMS__PROVIDERS__SMTP__PORT", port.as_str()),
        ("COMMS__PROVIDERS__SMTP__TLS", "none"),
        ("COMMS__SENDER__MAX_ATTEMPTS", "10"),
    ])
    .await;
    fleet
        .approved_template("note", "email", Some("A note"), "Hello {{ name }}")
        .await;
    // SendGrid is down for the whole test.
    fleet
        .sandbox()
        .add_fault(&FaultSpec {
            status: Some(503),
            ..FaultSpec::default()
        })
        .await
        .expect("fault");
    let keys: Vec<String> = (0..8).map(|i| format!("mail-{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        fleet
            .send(&serde_json::json!({
                "idempotency_key": key, "channel": "email", "kind": "transactional",
                "recipient": { "email": format!("dana{i}@example.com"), "name": "Dana" },
                "template": { "name": "note", "vars": { "name": "Dana" } },
                "record": { "type": "client", "id": fleet.client_id.to_string() },
                "owner": "ana", "source": "crm", "trigger": "client.note"
            }))
            .await;
    }
    for key in &keys {
        assert!(
            fleet.reaches(key, "sent").await,
            "{key}: {:?}",
            timeline(&fleet, key).await
        );
    }
    assert!(
        fleet
            .sandbox()
            .messages()
            .await
            .expect("records")
            .is_empty()
    );
    let mails = sink.received();
    for i in 0..keys.len() {
        let to = format!("To: dana{i}@example.com");
        let copies = mails.iter().filter(|m| m.contains(&to)).count();
        assert_eq!(copies, 1, "dana{i} got {copies} mails through the relay");
    }
    let via_smtp: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.messages WHERE channel = 'email' AND provider = 'smtp'",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("messages");
    assert_eq!(via_smtp, keys.len() as i64);
    fleet.stop().await;
}

/// The whole way back: the second account's signed status callbacks reach the gateway, are
/// verified with that account's token, and the status worker moves each failed-over message to
/// `delivered`, found by provider and SID as before failover.
#[tokio::test]
async fn callbacks_from_the_second_account_deliver_the_failed_over_messages() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gateway = format!("http://{}", listener.local_addr().expect("addr"));
    let callback = format!("{gateway}/webhooks/twilio/status");
    let (_refusing, closed) = comms_tests::refusing_url();
    let mut config = SandboxConfig::generated()
        .expect("signing key")
        .with_gateway(gateway.clone());
    config.twilio_account_sid = SECOND_SID.into();
    config.twilio_auth_token = SECOND_TOKEN.into();
    let second = RunningSandbox::start(config).await.expect("second sandbox");
    let fleet = fleet(
        &second,
        &[
            ("COMMS__PROVIDERS__TWILIO__BASE_URL", &closed),
            ("COMMS__GATEWAY__PUBLIC_URL", &gateway),
            (
                "COMMS__PROVIDERS__TWILIO_SECONDARY__STATUS_CALLBACK",
                &callback,
            ),
        ],
    )
    .await;
    let runtime =
        comms_runtime::runtime::Runtime::new(fleet.env.settings.clone(), fleet.env.pool.clone());
    let shutdown = comms_runtime::shutdown::Shutdown::new();
    let workers = [
        tokio::spawn(comms_gateway::serve(
            listener,
            runtime.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(comms_status::run(runtime, shutdown.clone())),
    ];
    for i in 0..5 {
        let key = format!("fo-{i}");
        fleet
            .send(&sms_request(&key, &phone(i), fleet.client_id))
            .await;
    }
    // `sent` may not be seen at all: the callback can come first.
    for i in 0..5 {
        let key = format!("fo-{i}");
        assert!(
            eventually(WAIT, || async {
                fleet.state(&key).await.as_deref() == Some("delivered")
            })
            .await,
            "{key} delivered; its timeline: {:?}",
            timeline(&fleet, &key).await
        );
    }
    assert_eq!(accepted(&second.client()).await.len(), 5);
    shutdown.cancel();
    for worker in workers {
        worker.await.expect("worker").expect("stops cleanly");
    }
    fleet.stop().await;
    let _ = second.shutdown().await;
}
