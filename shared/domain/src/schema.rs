//! The database schema this build was written against: the migrations in `migrations/`, embedded
//! at compile time so a binary always carries its schema, and the one call that applies them.

use comms_runtime::db::DbError;
use comms_runtime::settings::DatabaseSettings;
use sqlx::migrate::Migrator;

/// The schema of this build, embedded from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Creates the database if it does not exist, then applies every pending migration of this
/// build. Returns how many migrations were recorded during this call.
pub async fn migrate(settings: &DatabaseSettings) -> Result<usize, DbError> {
    comms_runtime::db::migrate(settings, &MIGRATOR).await
}
