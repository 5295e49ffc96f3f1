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

#[tokio::test]
async fn pause_status_and_incident_show_name_the_incident_that_paused_a_client() {
    let env = TestEnv::new().await;
    let client: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO comms.clients (name, owner) VALUES ('Acme', 'ana') RETURNING id",
    )
    .fetch_one(&env.pool)
    .await
    .expect("client");
    let incident: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO comms.incidents (title, severity, owner, sequence) VALUES ('Outage', 'major', 'ana', 1) RETURNING id",
    )
    .fetch_one(&env.pool)
    .await
    .expect("incident");
    sqlx::query("INSERT INTO comms.incident_clients (incident_id, client_id, added_at_sequence) VALUES ($1, $2, 1)")
        .bind(incident)
        .bind(client)
        .execute(&env.pool)
        .await
        .expect("link");
    comms_domain::pause::store::pause_for_incident(
        &env.pool,
        client,
        incident,
        "facts not verified",
        "comms-incidents",
    )
    .await
    .expect("incident pause");

    let status = commsctl(&env, Some("oncall"), &["pause", "status"]);
    let line = status.stdout.lines().find(|l| l.starts_with("client"));
    assert!(
        line.is_some_and(|l| l.contains(&format!("[incident {incident}]"))),
        "pause status names the incident: {status:?}"
    );
    let json = commsctl(&env, None, &["pause", "status", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(shown[0]["incident"], incident.to_string());

    let listed = commsctl(&env, None, &["incident", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    assert_eq!(listed[0]["id"], incident.to_string());
    assert_eq!(listed[0]["clients"], 1);
    let shown = commsctl(
        &env,
        None,
        &["incident", "show", &incident.to_string(), "--json"],
    );
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).expect("JSON");
    assert_eq!(shown["paused_clients"][0], client.to_string());
    let human = commsctl(&env, None, &["incident", "show", &incident.to_string()]);
    assert!(
        human
            .stdout
            .contains(&format!("paused by this incident: client {client}")),
        "{human:?}"
    );
    env.teardown().await;
}

/// A filter that can match nothing (a state that does not exist, a limit below 1) is a typo:
/// refused with the values it takes, before any database is asked, instead of an empty answer.
#[test]
fn filters_that_can_match_nothing_are_refused_with_the_values_they_take() {
    // An address nothing listens on: the refusal must come before any connection.
    let env = [(
        "COMMS__DATABASE__URL",
        "postgres://postgres@127.0.0.1:1/none",
    )];
    for (args, says) in [
        (
            &["digest", "list", "--state", "bogus"][..],
            "awaiting_approval",
        ),
        (
            &["webhooks", "deliveries", "--state", "bogus"][..],
            "pending",
        ),
        (&["dead", "list", "--limit", "0"][..], "--limit"),
        (&["audit", "access", "--limit", "0"][..], "--limit"),
    ] {
        let ran = binary::run(BIN, args, &env);
        assert_eq!(ran.code, Some(2), "commsctl {args:?}: {ran:?}");
        assert!(ran.stderr.contains(says), "commsctl {args:?}: {ran:?}");
    }
}

/// `commsctl … | head`: a reader that stops early ends the command quietly, exit 0, whether the
/// command printed with `println!` or through a writer, never with a panic report.
#[tokio::test]
async fn a_closed_output_ends_the_command_quietly() {
    let env = TestEnv::new().await;
    for args in [&["--check-config"][..], &["pause", "status"][..]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let ran = Command::new(BIN)
            .args(args)
            .env(
                "COMMS__DATABASE__URL",
                env.settings.database.url.expose_secret(),
            )
            .stdout(writer)
            .output()
            .expect("commsctl runs");
        let stderr = String::from_utf8_lossy(&ran.stderr);
        assert_eq!(ran.status.code(), Some(0), "commsctl {args:?}: {stderr}");
        assert!(stderr.is_empty(), "commsctl {args:?}: {stderr}");
    }
    env.teardown().await;
}

/// `templates add` refuses what a provider or the renderer would refuse later, naming it, and
/// stores nothing; a good version is created as a draft.
#[tokio::test]
async fn a_template_that_could_never_be_sent_is_refused_when_added() {
    let env = TestEnv::new().await;
    let dir = std::env::temp_dir().join(format!("commsctl-templates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, body).expect("template file");
        path.display().to_string()
    };
    let (empty, broken, good) = (
        file("empty.txt", "  \n"),
        file("broken.txt", "Hello {{ name }"),
        file("good.txt", "Hello {{ name }}"),
    );
    let url = env.settings.database.url.expose_secret().to_string();
    let db = [("COMMS__DATABASE__URL", url.as_str())];
    for (args, says) in [
        (
            vec!["--name", "t1", "--channel", "sms", "--file", &empty],
            "the body is empty",
        ),
        (
            vec!["--name", "t2", "--channel", "email", "--file", &good],
            "--subject is required",
        ),
        (
            vec!["--name", "t3", "--channel", "sms", "--file", &broken],
            "not valid template syntax",
        ),
        (
            vec!["--name", "Bad Name", "--channel", "sms", "--file", &good],
            "--name: expected",
        ),
    ] {
        let mut all = vec!["templates", "add"];
        all.extend(args.iter().copied());
        let ran = binary::run(BIN, &all, &db);
        assert_eq!(ran.code, Some(1), "{all:?}: {ran:?}");
        assert!(ran.stderr.contains(says), "{all:?}: {ran:?}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.templates")
        .fetch_one(&env.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0, "nothing refused was stored");
    let ran = binary::run(
        BIN,
        &[
            "templates",
            "add",
            "--name",
            "t4",
            "--channel",
            "sms",
            "--file",
            &good,
        ],
        &db,
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let _ = std::fs::remove_dir_all(&dir);
    env.teardown().await;
}

/// `send` checks the normalised copy the sender will receive, as the enqueue API does: a request
/// within the 64 KiB limit as written but over it once normalised is refused here, before any
/// broker is asked, instead of being published and dead-lettered by the sender.
#[test]
fn send_refuses_a_request_whose_normalised_copy_is_too_large() {
    let mut request: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/examples/welcome-sms.json"))
            .expect("the example");
    let compact = |r: &serde_json::Value| serde_json::to_vec(r).expect("json").len();
    request["template"]["vars"]["pad"] = serde_json::Value::String(String::new());
    let room = 65_536 - 8 - compact(&request);
    request["template"]["vars"]["pad"] = serde_json::Value::String("x".repeat(room));
    let path = std::env::temp_dir().join(format!("commsctl-big-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(&request).expect("json")).expect("file");
    let file = path.display().to_string();
    // No broker listens there: the refusal must come first.
    let env = [("COMMS__AMQP__URL", "amqp://guest:guest@127.0.0.1:1/%2f")];
    let ran = binary::run(BIN, &["send", "--file", &file], &env);
    let _ = std::fs::remove_file(&path);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stderr.contains("payload_too_large"), "{ran:?}");
    assert!(ran.stderr.contains("nothing was sent"), "{ran:?}");
}

/// `clients add` with an existing id updates it and says so; a blank name is refused.
#[tokio::test]
async fn adding_a_client_again_says_it_updated_it() {
    let env = TestEnv::new().await;
    let id = uuid::Uuid::new_v4().to_string();
    let add = |name: &str| {
        commsctl(
            &env,
            Some("ana"),
            &[
                "clients", "add", "--name", name, "--owner", "ana", "--id", &id,
            ],
        )
    };
    assert!(add("Acme").stdout.starts_with("added client"));
    assert!(add("Acme Dental").stdout.starts_with("updated client"));
    let url = env.settings.database.url.expose_secret().to_string();
    let blank = binary::run(
        BIN,
        &["clients", "add", "--name", " ", "--owner", "ana"],
        &[("COMMS__DATABASE__URL", url.as_str())],
    );
    assert_eq!(blank.code, Some(1), "{blank:?}");
    env.teardown().await;
}
