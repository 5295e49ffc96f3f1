//! The operator CLI of comms-fleet, as a library so tests drive the same code a person runs.
//!
//! Settings come from the same `COMMS_CONFIG` / `COMMS__*` layers as every worker. Commands that
//! list things accept `--json` for scripts; the default output is for a person at a terminal.

mod commands;

use clap::{CommandFactory, Parser, Subcommand};
use comms_domain::approvals::Decision;
use comms_runtime::settings::Settings;

pub use commands::digest::DigestCommand;
pub use commands::keys::KeysCommand;
pub use commands::status::{StatusReport, status_report};
pub use commands::templates::TemplatesCommand;
pub use comms_domain::timeline::{MessageView, view as message_view};

#[derive(Debug, Parser)]
#[command(
    name = "commsctl",
    version,
    about = "Operate the comms-fleet: migrations, status and more",
    arg_required_else_help = true
)]
pub struct Cli {
    /// Print machine-readable JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Load and validate the settings, print them with every secret masked, and exit: 0 when
    /// they are valid, 1 with the reason when not.
    #[arg(long, exclusive = true)]
    pub check_config: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Parses this process's arguments like [`Parser::parse`], and also refuses (exit 2) a
    /// command given together with `--check-config`, which stands alone.
    pub fn parse_checked() -> Self {
        let cli = Self::parse();
        if cli.check_config && cli.command.is_some() {
            Self::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--check-config cannot be used with a command",
                )
                .exit();
        }
        cli
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if needed and apply pending migrations (safe to run concurrently).
    Migrate,
    /// Show whether the broker and database answer, queue depths and messages by state.
    Status,
    /// Validate a send request (v1) from a file and publish it to `comms.send`.
    Send {
        #[arg(long)]
        file: std::path::PathBuf,
    },
    /// Show one message (by id or idempotency key) and its timeline of events; the recipient is
    /// masked unless `--reveal` (recorded: who, when, why).
    Message {
        reference: String,
        /// Show the full address and the content; the read is recorded in the access log.
        #[arg(long)]
        reveal: bool,
        /// Why you read it (recorded with the reveal).
        #[arg(long, requires = "reveal")]
        why: Option<String>,
        /// Who reads (defaults to $USER).
        #[arg(long = "as", requires = "reveal")]
        actor: Option<String>,
    },
    /// Pause automated sending (global, or one channel, kind or client); `pause status` shows it.
    Pause(commands::pause::PauseArgs),
    /// Resume a paused scope; held messages are released in creation order.
    Resume(commands::pause::ResumeArgs),
    /// List messages held by a pause.
    Held,
    /// Retention: `retention run [--dry-run]` removes personal content past its retention now.
    #[command(subcommand)]
    Retention(commands::retention::RetentionCommand),
    /// The sandbox provider of `make run`: `sandbox reply` simulates an inbound SMS.
    #[command(subcommand)]
    Sandbox(commands::sandbox::SandboxCommand),
    /// Platform records for first runs and demos.
    #[command(subcommand)]
    Clients(commands::clients::ClientsCommand),
    /// Audits: `audit access` lists who read full addresses and content, when and why.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Contacts: `contacts forget` erases a person's personal data (docs/privacy.md).
    #[command(subcommand)]
    Contacts(commands::contacts::ContactsCommand),
    /// Open owner tasks by owner and age; `tasks done <id>` closes one.
    Tasks {
        /// Only this owner's tasks.
        #[arg(long)]
        owner: Option<String>,
        #[command(subcommand)]
        action: Option<commands::tasks::TasksCommand>,
    },
    /// Report digests: `digest build --period ID`, `show`, `list`, `approve`, `release`.
    #[command(subcommand)]
    Digest(commands::digest::DigestCommand),
    /// Outreach sequences: add, activate (the escalation owner), list, show, rollback, enrol, stop.
    #[command(subcommand)]
    Sequences(commands::sequences::SequencesCommand),
    /// Reports: `report outcomes` (response time, approval time, report views, reviews, bookings),
    /// `report roi` (a client's booked-result summary for the portal, after approval).
    #[command(subcommand)]
    Report(commands::report::ReportCommand),
    /// Manage versioned templates.
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// Manage API keys for the gateway's HTTP API (the key is printed once, at creation).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Webhooks out: an app's endpoints for lifecycle events, their deliveries and replays.
    #[command(subcommand)]
    Webhooks(commands::webhooks::WebhooksCommand),
    /// Incidents: declare, update, verify, resolve, show, list; resume-automation (the owner).
    #[command(subcommand)]
    Incident(commands::incident::IncidentCommand),
    /// Dead letters: `dead list|show|replay|purge` (replay and purge are audited).
    #[command(subcommand)]
    Dead(commands::dead::DeadCommand),
    /// What waits for an owner's decision (`approvals decided|expire|delegate|delegates` too).
    Approvals(commands::approvals::ApprovalsArgs),
    /// Approve a waiting message (by id or idempotency key); it then goes out through the sender.
    Approve {
        reference: String,
        /// Who approves (defaults to $USER): the message's owner or a delegate they named.
        #[arg(long = "as")]
        actor: Option<String>,
    },
    /// Reject a waiting message: it is blocked as `approval_rejected` with your reason.
    Reject {
        reference: String,
        #[arg(long)]
        reason: String,
        /// Who rejects (defaults to $USER): the message's owner or a delegate they named.
        #[arg(long = "as")]
        actor: Option<String>,
    },
    /// Record the review of an AI draft: `--safe` lets it go on (to approval, if it needs one).
    Review {
        reference: String,
        /// The draft was read and is safe to send (required; reject it otherwise).
        #[arg(long, required = true)]
        safe: bool,
        /// Who reviewed (defaults to $USER): the message's owner or a delegate they named.
        #[arg(long = "as")]
        actor: Option<String>,
    },
}

/// Makes a closed standard output (`commsctl … | head`) end the command quietly, as it does for
/// the standard Unix tools, instead of a panic report: the reader has what it wanted. Every
/// other panic is reported as before.
pub fn quiet_on_closed_output() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}

/// Runs one command with settings from the environment.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    run_with(cli, &settings).await
}

/// Runs one command with explicit settings.
pub async fn run_with(cli: Cli, settings: &Settings) -> anyhow::Result<()> {
    let Some(command) = cli.command else {
        // clap guarantees a command unless --check-config was given.
        let printed =
            comms_runtime::cli::print_config("commsctl", settings, &mut std::io::stdout().lock());
        // A reader that stopped early (`| head`) is not a failure; any other write error is.
        return match printed {
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        };
    };
    match command {
        Command::Migrate => commands::migrate::run(settings, cli.json).await,
        Command::Status => commands::status::run(settings, cli.json).await,
        Command::Send { file } => commands::send::run(settings, &file, cli.json).await,
        Command::Message {
            reference,
            reveal,
            why,
            actor,
        } => {
            let pool = database(settings).await?;
            let how = commands::message::Reveal {
                reveal,
                why,
                who: commands::approvals::actor(actor),
            };
            commands::message::run(&pool, &reference, how, cli.json).await
        }
        Command::Pause(args) => {
            let pool = database(settings).await?;
            commands::pause::pause(&pool, args, cli.json).await
        }
        Command::Resume(args) => {
            let pool = database(settings).await?;
            commands::pause::resume(&pool, args, cli.json).await
        }
        Command::Held => {
            let pool = database(settings).await?;
            commands::pause::held(&pool, cli.json).await
        }
        Command::Retention(command) => {
            let pool = database(settings).await?;
            commands::retention::run(&pool, settings, command, cli.json).await
        }
        Command::Sandbox(command) => commands::sandbox::run(command, cli.json).await,
        Command::Clients(command) => {
            let pool = database(settings).await?;
            commands::clients::run(&pool, command, cli.json).await
        }
        Command::Audit(command) => {
            let pool = database(settings).await?;
            commands::audit::run(&pool, command, cli.json).await
        }
        Command::Contacts(command) => {
            let pool = database(settings).await?;
            commands::contacts::run(&pool, settings, command, cli.json).await
        }
        Command::Tasks { owner, action } => {
            let pool = database(settings).await?;
            match action {
                Some(command) => commands::tasks::run(&pool, command, cli.json).await,
                None => commands::tasks::list(&pool, owner, cli.json).await,
            }
        }
        Command::Digest(command) => {
            let pool = database(settings).await?;
            commands::digest::run(&pool, settings, command, cli.json).await
        }
        Command::Sequences(command) => {
            let pool = database(settings).await?;
            commands::sequences::run(&pool, command, cli.json).await
        }
        Command::Report(command) => {
            let pool = database(settings).await?;
            commands::report::run(&pool, settings, command, cli.json).await
        }
        Command::Templates(command) => {
            let pool = database(settings).await?;
            commands::templates::run(&pool, command, cli.json).await
        }
        Command::Keys(command) => {
            let pool = database(settings).await?;
            commands::keys::run(&pool, command, cli.json).await
        }
        Command::Webhooks(command) => {
            let pool = database(settings).await?;
            commands::webhooks::run(&pool, settings, command, cli.json).await
        }
        Command::Incident(command) => {
            let pool = database(settings).await?;
            commands::incident::run(&pool, settings, command, cli.json).await
        }
        Command::Dead(command) => {
            let pool = database(settings).await?;
            commands::dead::run(&pool, settings, command, cli.json).await
        }
        Command::Approvals(args) => {
            let pool = database(settings).await?;
            commands::approvals::run(&pool, settings, args, cli.json).await
        }
        Command::Approve { reference, actor } => {
            let pool = database(settings).await?;
            let (decision, actor) = (Decision::Approve, commands::approvals::actor(actor));
            commands::approvals::decide(&pool, settings, &reference, decision, actor, cli.json)
                .await
        }
        Command::Reject {
            reference,
            reason,
            actor,
        } => {
            let pool = database(settings).await?;
            let (decision, actor) = (
                Decision::Reject { reason },
                commands::approvals::actor(actor),
            );
            commands::approvals::decide(&pool, settings, &reference, decision, actor, cli.json)
                .await
        }
        Command::Review {
            reference, actor, ..
        } => {
            let pool = database(settings).await?;
            let (decision, actor) = (Decision::ReviewSafe, commands::approvals::actor(actor));
            commands::approvals::decide(&pool, settings, &reference, decision, actor, cli.json)
                .await
        }
    }
}

async fn database(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    use anyhow::Context;
    comms_runtime::db::connect(&settings.database).await.context(
        "cannot reach PostgreSQL (is it running? `make services`; migrated? `commsctl migrate`)",
    )
}
