//! `commsctl migrate`: create the database if missing and apply pending migrations.

use anyhow::Context;
use comms_runtime::settings::Settings;

pub async fn run(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let applied = comms_domain::schema::migrate(&settings.database)
        .await
        .context("migration failed (is PostgreSQL running? try `make services`)")?;
    let total = comms_domain::schema::MIGRATOR.iter().count();
    if json {
        println!(
            "{}",
            serde_json::json!({ "applied": applied, "known": total })
        );
    } else if applied == 0 {
        println!("database is up to date ({total} migrations)");
    } else {
        println!("applied {applied} migration(s); {total} known");
    }
    Ok(())
}
