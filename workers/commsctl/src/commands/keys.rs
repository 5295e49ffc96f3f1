//! `commsctl keys`: API keys for the gateway's HTTP API.
//!
//! `create` prints the key exactly once — only its hash is stored, so it cannot be shown again;
//! `list` shows names, roles and dates (never keys); `revoke` stops every active key of a name.

use anyhow::Context;
use clap::Subcommand;
use comms_domain::api_keys::{self, Role};
use sqlx::PgPool;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key for an app and print it once.
    Create {
        /// The calling app or person; audit logs show this name.
        #[arg(long)]
        name: String,
        /// What the key may do: enqueue, oncall or owner.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List keys (names, roles, dates; never the keys).
    List,
    /// Revoke every active key with this name.
    Revoke {
        #[arg(long)]
        name: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse::<Role>().map_err(|e| e.to_string())
}

pub async fn run(pool: &PgPool, command: KeysCommand, json: bool) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { name, role } => {
            let created = api_keys::create(pool, &name, role)
                .await
                .context("creating the API key")?;
            if json {
                println!("{}", serde_json::to_string(&created)?);
            } else {
                println!("API key for {} (role {}):", created.name, created.role);
                println!();
                println!("    {}", created.key);
                println!();
                println!("Store it now: it is shown only once. Callers send it as");
                println!(
                    "`Authorization: Bearer <key>`. Revoke with: commsctl keys revoke --name {}",
                    created.name
                );
            }
        }
        KeysCommand::List => {
            let all = api_keys::list(pool).await.context("listing API keys")?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else if all.is_empty() {
                println!(
                    "no API keys; create one with: commsctl keys create --name APP --role enqueue"
                );
            } else {
                println!("{:<30} {:<8} {:<26} revoked", "name", "role", "created");
                for key in all {
                    let revoked = key
                        .revoked_at
                        .map_or_else(|| "-".to_string(), |at| at.to_rfc3339());
                    println!(
                        "{:<30} {:<8} {:<26} {revoked}",
                        key.name,
                        key.role,
                        key.created_at.to_rfc3339()
                    );
                }
            }
        }
        KeysCommand::Revoke { name } => {
            let count = api_keys::revoke(pool, &name).await?;
            if json {
                println!("{}", serde_json::json!({ "name": name, "revoked": count }));
            } else {
                println!("revoked {count} key(s) named {name}");
            }
        }
    }
    Ok(())
}
