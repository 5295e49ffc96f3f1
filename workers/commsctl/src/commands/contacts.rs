//! `commsctl contacts forget`: erase a person's personal data everywhere the fleet keeps it, keeping
//! only what the law requires (docs/privacy.md).

use clap::{Args, Subcommand};
use comms_domain::privacy::erase::{self, ForgetRequest, Subject};
use comms_runtime::settings::Settings;
use comms_runtime::topology::Topology;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Erase a person: addresses and name, rendered and inbound bodies, raw payloads, rejected
    /// input, dead letters (comms.dead is collected first) and portal views that hold them. An opted-out address stays refused (as a keyed hash).
    Forget(ForgetArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("whom").required(true).args(["phone", "email", "contact"])))]
pub struct ForgetArgs {
    /// The person's phone number (E.164, as messages were sent to it).
    #[arg(long)]
    phone: Option<String>,
    /// The person's email address.
    #[arg(long)]
    email: Option<String>,
    /// The contact's id: every address it has.
    #[arg(long)]
    contact: Option<Uuid>,
    /// Why (the erasure request, a ticket): recorded in the audit.
    #[arg(long)]
    reason: String,
    /// Who erases: recorded in the audit.
    #[arg(long)]
    by: String,
}

pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    command: ContactsCommand,
    json: bool,
) -> anyhow::Result<()> {
    let ContactsCommand::Forget(args) = command;
    let subject = match (args.phone, args.email, args.contact) {
        (Some(phone), _, _) => Subject::Phone(phone),
        (_, Some(email), _) => Subject::Email(email),
        (_, _, Some(id)) => Subject::Contact(id),
        // clap's group makes one of them required.
        _ => anyhow::bail!("name whom to erase: --phone, --email or --contact"),
    };
    let request = ForgetRequest {
        subject,
        reason: args.reason,
        by: args.by,
    };
    let key = settings.privacy.hash_key.expose_secret().as_bytes();
    // Dead letters waiting in comms.dead are erased too, so the broker must be reachable.
    let (connection, publisher) = super::dead::broker(settings).await?;
    let topology = Topology::new(settings.amqp.namespace.clone());
    let erased = erase::forget(pool, &publisher, &topology, key, &request).await;
    let _ = connection.close(200, "done".into()).await;
    let erasure = erased?;
    if json {
        println!("{}", serde_json::to_string_pretty(&erasure)?);
        return Ok(());
    }
    println!("erased (audit #{}, by {})", erasure.id, request.by.trim());
    for (table, count) in &erasure.counts {
        println!("  {table:<22} {count}");
    }
    Ok(())
}
