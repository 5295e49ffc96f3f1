//! `commsctl clients add`: create a client record to attach messages to. The platform owns its
//! records; this exists for first runs, demos and small installs without a CRM feed.
//! `commsctl clients review-destination`: where the client's review requests send people
//! (docs/outcomes.md, "Tracked review links").

use clap::Subcommand;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Add a client; with the --id of an existing client, update its name and owner (and say so).
    Add {
        #[arg(long)]
        name: String,
        /// The accountable owner.
        #[arg(long)]
        owner: String,
        /// A fixed id (defaults to a new one).
        #[arg(long)]
        id: Option<Uuid>,
    },
    /// Set where the client's tracked review links lead (an https:// review page).
    ReviewDestination {
        #[arg(long)]
        client: Uuid,
        #[arg(long)]
        url: String,
        /// Who sets it (default: the operator, $USER).
        #[arg(long)]
        by: Option<String>,
    },
}

pub async fn run(pool: &PgPool, command: ClientsCommand, json: bool) -> anyhow::Result<()> {
    let (name, owner, id) = match command {
        ClientsCommand::Add { name, owner, id } => (name, owner, id),
        ClientsCommand::ReviewDestination { client, url, by } => {
            let by = super::pause::operator(by);
            comms_domain::outcomes::review_link::set_destination(pool, client, &url, &by).await?;
            if json {
                println!("{}", serde_json::json!({ "client": client, "set_by": by }));
            } else {
                println!("review destination of client {client} set by {by}");
            }
            return Ok(());
        }
    };
    let (name, owner) = (name.trim().to_string(), owner.trim().to_string());
    if name.is_empty() || owner.is_empty() {
        anyhow::bail!("--name and --owner must not be blank");
    }
    // `xmax = 0` only on a row this statement inserted: an existing id is updated, and says so.
    let (id, added): (Uuid, bool) = sqlx::query_as(
        "INSERT INTO comms.clients (id, name, owner) VALUES (COALESCE($1, gen_random_uuid()), $2, $3)
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, owner = EXCLUDED.owner
         RETURNING id, (xmax = 0)",
    )
    .bind(id)
    .bind(&name)
    .bind(&owner)
    .fetch_one(pool)
    .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "id": id, "name": name, "owner": owner, "added": added })
        );
    } else if added {
        println!("added client {id} ({name}, owner {owner})");
    } else {
        println!("updated client {id}: the id existed; its name and owner are now {name}, {owner}");
    }
    Ok(())
}
