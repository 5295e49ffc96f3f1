//! Runs a built binary the way a person does, for the command-line tests of every binary crate.
//!
//! Cargo only tells a package's own tests where its binaries are (`CARGO_BIN_EXE_<name>`), so each
//! binary crate has a `tests/cli.rs` that includes this file with `#[path]` and passes its binary
//! in; the checks themselves are written once, here. Standard library only, so including it costs
//! a test nothing to build.
#![allow(dead_code)] // each including test uses part of it

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The command-line tests of a worker binary, for its crate's `tests/cli.rs` (after
/// `#[macro_use] mod binary;`): `--help`/`--version`, unknown arguments, `--check-config`.
#[allow(unused_macros)] // used by the including tests, not by this crate
macro_rules! worker_cli_tests {
    ($name:literal) => {
        const BIN: &str = env!(concat!("CARGO_BIN_EXE_", $name));

        #[test]
        fn help_and_version_print_and_exit_0() {
            binary::assert_help_and_version(BIN, $name, env!("CARGO_PKG_VERSION"));
        }

        #[test]
        fn unknown_arguments_exit_2_and_start_nothing() {
            binary::assert_refuses_unknown(BIN, $name, binary::WORKER_LISTEN_VARS);
        }

        #[test]
        fn check_config_prints_the_settings_with_every_secret_masked() {
            binary::assert_worker_check_config(BIN, $name);
        }
    };
}

/// Longer than any of these commands takes; a binary still running then has started work.
const DEADLINE: Duration = Duration::from_secs(30);

/// What one run printed and how it ended (`code` is `None` when it had to be killed).
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `binary` with `args` and extra environment `env`, killing it at the deadline.
pub fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut command = Command::new(binary);
    command.args(args).envs(env.iter().copied());
    run_command(command)
}

/// Runs a prepared command, killing it at the deadline.
pub fn run_command(mut command: Command) -> Ran {
    let id = format!("{}-{}", std::process::id(), unique());
    let out_path = std::env::temp_dir().join(format!("comms-cli-{id}.out"));
    let err_path = std::env::temp_dir().join(format!("comms-cli-{id}.err"));
    let file = |path: &PathBuf| std::fs::File::create(path).expect("temp file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file(&out_path))
        .stderr(file(&err_path))
        .spawn()
        .expect("the binary starts");
    // The child is waited for on a thread of its own, so the deadline is a receive timeout on
    // its exit status, not a polling loop.
    let pid = child.id();
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited.send(child.wait().ok().and_then(|status| status.code()));
    });
    let code = match exit.recv_timeout(DEADLINE) {
        Ok(code) => code,
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let _ = exit.recv();
            None
        }
    };
    let read = |path: &PathBuf| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let _ = std::fs::remove_file(path);
        text
    };
    Ran {
        code,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// `--help` and `-h` print the usage (naming `--check-config`) and exit 0; `--version` prints
/// the name and version and exits 0.
pub fn assert_help_and_version(binary: &str, name: &str, version: &str) {
    for flag in ["--help", "-h"] {
        let ran = run(binary, &[flag], &[]);
        assert_eq!(ran.code, Some(0), "{name} {flag}: {ran:?}");
        assert!(
            ran.stdout.contains(&format!("Usage: {name}")),
            "{name} {flag} prints its usage: {ran:?}"
        );
        for option in ["--check-config", "--version", "--help"] {
            assert!(ran.stdout.contains(option), "{name} {flag} names {option}");
        }
    }
    let ran = run(binary, &["--version"], &[]);
    assert_eq!(ran.code, Some(0), "{name} --version: {ran:?}");
    assert_eq!(ran.stdout.trim(), format!("{name} {version}"));
}

/// An unknown option or a stray word exits 2 with clap's message, and starts nothing: every
/// address in `listen_vars` points at a port this test holds, so a binary that went on to start
/// would fail to bind it (exit 1) or keep running (killed at the deadline), never exit 2.
pub fn assert_refuses_unknown(binary: &str, name: &str, listen_vars: &[&str]) {
    let held: Vec<(String, String, TcpListener)> = listen_vars
        .iter()
        .map(|var| {
            let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
            let address = listener.local_addr().expect("address").to_string();
            ((*var).to_string(), address, listener)
        })
        .collect();
    let env: Vec<(&str, &str)> = held
        .iter()
        .map(|(var, address, _)| (var.as_str(), address.as_str()))
        .collect();
    for (args, complaint) in [
        (
            &["--no-such-flag"][..],
            "unexpected argument '--no-such-flag'",
        ),
        (&["start"][..], "'start'"),
        (
            &["--check-config", "--verbose"][..],
            "unexpected argument '--verbose'",
        ),
        (&["--check-config", "start"][..], "'start'"),
    ] {
        let ran = run(binary, args, &env);
        assert_eq!(ran.code, Some(2), "{name} {args:?} is refused: {ran:?}");
        assert!(ran.stderr.contains(complaint), "{name} {args:?}: {ran:?}");
        assert!(ran.stdout.is_empty(), "{name} {args:?} prints nothing else");
    }
    drop(held);
}

/// Where a worker binary would listen: held by [`assert_refuses_unknown`].
pub const WORKER_LISTEN_VARS: &[&str] = &["COMMS__HTTP__LISTEN", "COMMS__GATEWAY__LISTEN"];

/// Every kind of secret a worker's settings hold, as an operator would set them.
const WORKER_SECRETS: &[(&str, &str)] = &[
    (
        "COMMS__DATABASE__URL",
        "postgres://app:pg-secret-1@db.internal:5432/comms",
    ),
    (
        "COMMS__AMQP__URL",
        "amqp://fleet:amqp-secret-2@mq.internal:5672/%2f",
    ),
    ("COMMS__PROVIDERS__TWILIO__AUTH_TOKEN", "twilio-secret-3"),
    (
        "COMMS__PROVIDERS__SENDGRID__API_KEY",
        "SG.sendgrid-secret-4",
    ),
    ("COMMS__PROVIDERS__SMTP__PASSWORD", "smtp-secret-5"),
    ("COMMS__GATEWAY__INBOUND_SECRET", "inbound-secret-6"),
    ("COMMS__REPLIES__UNSUBSCRIBE_SECRET", "unsubscribe-secret-7"),
];

/// A worker's `--check-config`: valid settings are printed with every secret masked (the
/// database and broker URLs keep their user and host), exit 0; a wrong value exits 1 naming its
/// key.
pub fn assert_worker_check_config(binary: &str, name: &str) {
    let header = format!("# {name}: the settings are valid");
    assert_check_config_masks(
        binary,
        WORKER_SECRETS,
        &[
            header.as_str(),
            "database.url = \"postgres://app:********@db.internal:5432/comms\"",
            "amqp.url = \"amqp://fleet:********@mq.internal:5672/%2f\"",
            "providers.twilio.auth_token = \"********\"",
            "consumer.prefetch = 128",
        ],
    );
    assert_check_config_refuses(
        binary,
        &[("COMMS__CONSUMER__PREFETCH", "lots")],
        "consumer.prefetch",
    );
    assert_check_config_refuses(
        binary,
        &[("COMMS__DATABASE__URL", "mysql://app:pg-secret-1@db/comms")],
        "database.url",
    );
}

/// `--check-config` with secrets in the environment exits 0, prints every line of `shown`, and
/// none of the secret values, on stdout or stderr.
pub fn assert_check_config_masks(binary: &str, secrets: &[(&str, &str)], shown: &[&str]) {
    let ran = run(binary, &["--check-config"], secrets);
    assert_eq!(ran.code, Some(0), "--check-config: {ran:?}");
    for (_, secret) in secrets {
        for part in secret_parts(secret) {
            assert!(
                !ran.stdout.contains(part) && !ran.stderr.contains(part),
                "the secret {part:?} is printed: {ran:?}"
            );
        }
    }
    for line in shown {
        assert!(ran.stdout.contains(line), "missing {line:?} in {ran:?}");
    }
}

/// The parts of a secret value that must never be printed: the value itself, or, for a URL,
/// the password in it.
fn secret_parts(secret: &str) -> Vec<&str> {
    match secret.split_once("://") {
        Some((_, rest)) => rest
            .split_once('@')
            .and_then(|(credentials, _)| credentials.split_once(':'))
            .map(|(_, password)| vec![password])
            .unwrap_or_default(),
        None => vec![secret],
    }
}

/// `--check-config` with an invalid setting exits 1, names the problem on stderr, and prints no
/// settings.
pub fn assert_check_config_refuses(binary: &str, env: &[(&str, &str)], reason: &str) {
    let ran = run(binary, &["--check-config"], env);
    assert_eq!(ran.code, Some(1), "an invalid configuration: {ran:?}");
    assert!(ran.stderr.contains(reason), "names {reason:?}: {ran:?}");
    assert!(ran.stdout.is_empty(), "prints no settings: {ran:?}");
}
