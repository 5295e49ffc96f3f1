//! `commsctl`'s command line, run as an operator runs it: the checks every binary shares, and
//! who a pause or resume is recorded as.

#[path = "../../../tests/src/binary.rs"]
#[macro_use]
mod binary;

use std::process::Command;

use comms_tests::TestEnv;
use secrecy::ExposeSecret;

worker_cli_tests!("commsctl");

/// commsctl against the test's database, as `user` (no login variable at all when `None`).
fn commsctl(env: &TestEnv, user: Option<&str>, args: &[&str]) -> binary::Ran {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env(
            "COMMS__DATABASE__URL",
            env.settings.database.url.expose_secret(),
        )
        .env_remove("USER")
        .env_remove("LOGNAME");
    if let Some(user) = user {
        command.env("USER", user);
    }
    let ran = binary::run_command(command);
    assert_eq!(ran.code, Some(0), "commsctl {args:?}: {ran:?}");
    ran
}

async fn recorded_actors(env: &TestEnv) -> Vec<(String, String)> {
    sqlx::query_as("SELECT action, actor FROM comms.pause_events ORDER BY id")
        .fetch_all(&env.pool)
        .await
        .expect("pause history")
}

#[tokio::test]
async fn pause_and_resume_are_recorded_as_the_operator_and_shown_in_pause_status() {
    let env = TestEnv::new().await;
    commsctl(
        &env,
        Some("alice"),
        &["pause", "--reason", "provider incident"],
    );
    let status = commsctl(&env, Some("someone-else"), &["pause", "status"]);
    let line = status.stdout.lines().find(|l| l.starts_with("global"));
    assert!(
        line.is_some_and(|l| l.contains(" alice ")),
        "pause status shows who paused: {status:?}"
    );
    let json = commsctl(&env, None, &["pause", "status", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(shown[0]["actor"], "alice");

    let resumed = commsctl(&env, Some("bob"), &["resume", "--reason", "recovered"]);
    assert!(resumed.stdout.contains(" by bob"), "{resumed:?}");
    commsctl(
        &env,
        Some("alice"),
        &[
            "pause",
            "--channel",
            "sms",
            "--reason",
            "x",
            "--actor",
            "carol",
        ],
    );
    // No login variable: the account commsctl runs as, as `id -un` names it.
    commsctl(&env, None, &["resume", "--channel", "sms", "--reason", "y"]);
    let account = Command::new("id").arg("-un").output().expect("id -un");
    let account = String::from_utf8_lossy(&account.stdout).trim().to_string();
    assert!(!account.is_empty());
    let actors = recorded_actors(&env).await;
    let expected: Vec<(String, String)> = [
        ("pause", "alice"),
        ("resume", "bob"),
        ("pause", "carol"),
        ("resume", account.as_str()),
    ]
    .iter()
    .map(|(action, actor)| (action.to_string(), actor.to_string()))
    .collect();
    assert_eq!(actors, expected, "nobody is recorded as `commsctl`");
    env.teardown().await;
}
