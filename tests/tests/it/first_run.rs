//! The README's first run, through `comms-fleet --with-sandbox` itself: the walk-through's send
//! request goes out, the sandbox's signed callbacks reach the fleet's gateway so the message ends
//! `delivered`, and replies simulated with the sandbox (`POST /sandbox/inbound`, what
//! `commsctl sandbox reply` calls) are captured and a STOP opts the number out.

use std::time::Duration;

use comms_runtime::shutdown::Shutdown;
use comms_sandbox::{InboundSpec, SandboxClient};
use comms_tests::{TestEnv, eventually, free_address, on_free_ports};

/// The walk-through's own files, so the test and the README cannot drift apart.
const REQUEST: &str = include_str!("../../../docs/examples/welcome-sms.json");
const TEMPLATE: &str = include_str!("../../../docs/examples/welcome.txt");
const CLIENT: &str = "00000000-0000-4000-8000-000000000001";
const PHONE: &str = "+14155552671";
const WAIT: Duration = Duration::from_secs(30);

async fn message_states(env: &TestEnv) -> Option<(String, String)> {
    sqlx::query_as(
        "SELECT delivery_state, reply_state FROM comms.messages WHERE idempotency_key = 'welcome-0001'",
    )
    .fetch_optional(&env.pool)
    .await
    .expect("message")
}

async fn consent(env: &TestEnv) -> Option<String> {
    sqlx::query_scalar(
        "SELECT consent_state FROM comms.contact_channels WHERE channel = 'sms' AND address = $1",
    )
    .bind(PHONE)
    .fetch_optional(&env.pool)
    .await
    .expect("consent")
}

#[tokio::test]
async fn with_the_sandbox_a_first_send_is_delivered_and_replies_and_stop_are_captured() {
    let env = TestEnv::new().await;
    sqlx::query(
        "INSERT INTO comms.clients (id, name, owner) VALUES ($1::uuid, 'Acme Dental', 'ana')",
    )
    .bind(CLIENT)
    .execute(&env.pool)
    .await
    .expect("client");
    sqlx::query(
        "INSERT INTO comms.templates (name, version, channel, body, state, created_by, approved_by, approved_at)
         VALUES ('welcome', 1, 'sms', $1, 'approved', 'ana', 'ana', now())",
    )
    .bind(TEMPLATE)
    .execute(&env.pool)
    .await
    .expect("template");

    // As `make run` starts it, on free ports; provider base URLs stay at their defaults.
    let settings = on_free_ports(&env.settings);
    let sandbox = free_address();
    let options = comms_fleet::Options {
        with_sandbox: true,
        sandbox_listen: sandbox,
        worker: Default::default(),
    };
    let shutdown = Shutdown::new();
    let fleet = tokio::spawn(comms_fleet::run(settings, options, shutdown.clone()));
    let sandbox = SandboxClient::new(format!("http://{sandbox}"));
    assert!(
        eventually(WAIT, || async { sandbox.messages().await.is_ok() }).await,
        "the sandbox is up"
    );

    env.publish(
        &env.topology.send_exchange(),
        "send.sms",
        REQUEST.as_bytes(),
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            message_states(&env)
                .await
                .is_some_and(|(state, _)| state == "delivered")
        })
        .await,
        "the sandbox's callbacks reach the gateway: {:?}",
        message_states(&env).await
    );

    let reply = |body: &str| InboundSpec {
        from: PHONE.into(),
        body: body.into(),
        to: None,
    };
    let sent = sandbox.inbound(&reply("Thanks, see you Tuesday")).await;
    assert!(
        sent.is_ok_and(|s| s.gateway_status == 200),
        "the gateway takes the reply"
    );
    assert!(
        eventually(WAIT, || async {
            message_states(&env)
                .await
                .is_some_and(|(_, reply)| reply == "replied")
        })
        .await,
        "the reply is captured on the message"
    );
    let task: Option<String> =
        sqlx::query_scalar("SELECT owner FROM comms.tasks WHERE title = 'Reply needs a response'")
            .fetch_optional(&env.pool)
            .await
            .expect("task");
    assert_eq!(task.as_deref(), Some("ana"), "its owner has a task");

    sandbox
        .inbound(&reply("STOP"))
        .await
        .expect("STOP delivered");
    assert!(
        eventually(WAIT, || async {
            consent(&env).await.as_deref() == Some("opted_out")
        })
        .await,
        "STOP opts the number out: {:?}",
        consent(&env).await
    );

    shutdown.cancel();
    fleet
        .await
        .expect("fleet task")
        .expect("the fleet stops cleanly");
    env.teardown().await;
}
