//! The command line every worker binary shares: `--help`, `--version`, `--check-config`.
//!
//! A worker is configured by its environment (`COMMS_CONFIG`, `COMMS__*`), not by flags, so its
//! command line only answers questions: what is this, which version, and would it start with the
//! settings it sees. Anything else is refused by clap with exit status 2 before a setting is read,
//! a port bound or a queue consumed: a `--help` typed at a production host must never start a
//! worker. Every binary parses with [`WorkerArgs`] and runs through [`main`], so they behave alike.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser};

use crate::settings::Settings;
use crate::shutdown::Shutdown;

/// What follows the options in every worker's `--help`.
const CONFIG_HELP: &str = "Settings come from the environment: defaults, then the TOML file named \
by COMMS_CONFIG, then COMMS__<SECTION>__<KEY> variables (docs/operations.md). \
`--check-config` prints what this process would run with.";

/// The options of every worker binary.
#[derive(Debug, Clone, Default, Args)]
pub struct WorkerArgs {
    /// Load and validate the settings, print them with every secret masked, and exit: 0 when
    /// they are valid, 1 with the reason when not. Nothing is connected to or started.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Debug, Parser)]
#[command(version, after_help = CONFIG_HELP)]
struct WorkerCli {
    #[command(flatten)]
    args: WorkerArgs,
}

impl WorkerArgs {
    /// Parses this process's arguments as binary `name`. `--help` and `--version` print and exit
    /// 0, anything unknown exits 2 with clap's message — all before anything else happens.
    pub fn parse_for(name: &'static str, about: &'static str) -> Self {
        let command = WorkerCli::command().name(name).bin_name(name).about(about);
        let parsed = WorkerCli::from_arg_matches(&command.get_matches());
        match parsed {
            Ok(cli) => cli.args,
            Err(error) => error.exit(),
        }
    }
}

/// Worker-specific validation beyond [`Settings`]' own (for example the gateway's keys).
pub type Validate = fn(&Settings) -> anyhow::Result<()>;

/// The whole life of a worker binary: load and validate the settings (exit 1 with the reason
/// if they are wrong), then either print them (`--check-config`) or set up telemetry and signal
/// handling and run `worker` until SIGTERM or ctrl-c. An error that ends the worker is printed
/// once, with its chain, and exits 1.
pub async fn main<F, Fut>(
    name: &'static str,
    args: &WorkerArgs,
    validate: Validate,
    worker: F,
) -> ExitCode
where
    F: FnOnce(Settings, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let settings = match Settings::load()
        .map_err(anyhow::Error::from)
        .and_then(|settings| validate(&settings).map(|()| settings))
    {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{name}: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        return match print_config(name, &settings, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{name}: cannot print the settings: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let telemetry = crate::telemetry::init(&settings.log, name);
    let shutdown = crate::shutdown::on_signals();
    let result = worker(settings, shutdown).await;
    telemetry.finish().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `settings` as `key = value` lines (the key is the `COMMS__` variable's path, the value
/// JSON), every secret masked.
pub fn print_config(name: &str, settings: &Settings, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "# {name}: the settings are valid; secrets are shown as {}",
        crate::settings::MASK
    )?;
    for (key, value) in settings.masked() {
        writeln!(out, "{key} = {value}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(vars: &[(&str, &str)]) -> String {
        let vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let settings = Settings::load_from(&vars).expect("settings load");
        let mut out = Vec::new();
        print_config("comms-test", &settings, &mut out).expect("prints");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn every_secret_is_masked_and_the_rest_is_shown() {
        let text = printed(&[
            (
                "COMMS__DATABASE__URL",
                "postgres://app:db-pass-1@db.internal:5432/comms?sslpassword=ssl-pass-2",
            ),
            (
                "COMMS__AMQP__URL",
                "amqps://fleet:amqp-pass-3@mq.internal/%2f",
            ),
            ("COMMS__PROVIDERS__TWILIO__AUTH_TOKEN", "twilio-token-4"),
            (
                "COMMS__PROVIDERS__TWILIO_SECONDARY__AUTH_TOKEN",
                "twilio-token-10",
            ),
            ("COMMS__PROVIDERS__SENDGRID__API_KEY", "SG.sendgrid-key-5"),
            ("COMMS__PROVIDERS__SMTP__PASSWORD", "smtp-pass-6"),
            ("COMMS__GATEWAY__INBOUND_SECRET", "inbound-secret-7"),
            ("COMMS__REPLIES__UNSUBSCRIBE_SECRET", "unsubscribe-secret-8"),
            (
                "COMMS__LOG__OTLP_ENDPOINT",
                "https://user:otlp-pass-9@collector.internal:4318",
            ),
        ]);
        for secret in [
            "db-pass-1",
            "ssl-pass-2",
            "amqp-pass-3",
            "twilio-token-4",
            "sendgrid-key-5",
            "smtp-pass-6",
            "inbound-secret-7",
            "unsubscribe-secret-8",
            "otlp-pass-9",
            "twilio-token-10",
        ] {
            assert!(!text.contains(secret), "{secret} printed:\n{text}");
        }
        for shown in [
            "database.url = \"postgres://app:********@db.internal:5432/comms?sslpassword=********\"",
            "amqp.url = \"amqps://fleet:********@mq.internal/%2f\"",
            "providers.twilio.auth_token = \"********\"",
            "providers.twilio_secondary.auth_token = \"********\"",
            "providers.smtp.password = \"********\"",
            "log.otlp_endpoint = \"https://user:********@collector.internal:4318/\"",
            "consumer.prefetch = 128",
            "gateway.listen = \"127.0.0.1:8080\"",
            "pause.max_staleness = \"5s\"",
        ] {
            assert!(text.contains(shown), "missing {shown:?} in:\n{text}");
        }
    }

    #[test]
    fn an_unset_optional_secret_reads_as_null() {
        let text = printed(&[]);
        assert!(text.contains("providers.smtp.password = null"), "{text}");
    }
}
