//! The PostgreSQL pool, and how a set of migrations is applied.
//!
//! Which migrations a build carries is the domain's (`comms_domain::schema`); applying them takes sqlx's advisory lock, which is what makes
//! several pods running `commsctl migrate` at once safe: they queue, and all but the first find
//! nothing left to do.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::settings::DatabaseSettings;

/// Why the database could not be prepared or reached.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL is not valid: {0}")]
    Url(#[source] sqlx::Error),
    #[error("cannot reach PostgreSQL at {target}: {source}")]
    Unreachable {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create database {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn options(settings: &DatabaseSettings) -> Result<PgConnectOptions, DbError> {
    settings
        .url
        .expose_secret()
        .parse::<PgConnectOptions>()
        .map(|o| o.log_statements(tracing::log::LevelFilter::Trace))
        .map_err(DbError::Url)
}

/// Host, port and database of the options, without credentials, for error messages.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    )
}

/// Opens the process's pool. Connections are made lazily so a process can start (and report
/// not-ready) while PostgreSQL is down, then recover without a restart.
pub fn connect_lazy(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    let options = options(settings)?;
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options))
}

/// Opens the pool and proves the database answers.
pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    let options = options(settings)?;
    let target = describe(&options);
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(|source| DbError::Unreachable { target, source })
}

/// Creates the database if it does not exist, then applies every pending migration.
/// Returns how many migrations were recorded during this call (when several pods migrate at
/// once, each may count the ones the first applied; every migration still runs exactly once).
pub async fn migrate(settings: &DatabaseSettings, migrator: &Migrator) -> Result<usize, DbError> {
    let options = options(settings)?;
    create_database_if_missing(&options).await?;
    let pool = connect(settings).await?;
    let before = applied_count(&pool).await;
    migrator.run(&pool).await?;
    let after = applied_count(&pool).await;
    pool.close().await;
    Ok(after.saturating_sub(before))
}

async fn applied_count(pool: &PgPool) -> usize {
    let count: Result<i64, _> =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await;
    // Before the first run the bookkeeping table does not exist yet: nothing is applied.
    count.map(|n| usize::try_from(n).unwrap_or(0)).unwrap_or(0)
}

async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), DbError> {
    let name = options.get_database().unwrap_or("postgres").to_string();
    let maintenance = options.clone().database("postgres");
    let target = describe(&maintenance);
    let mut conn = connect_with_retry(&maintenance)
        .await
        .map_err(|source| DbError::Unreachable { target, source })?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .map_err(|source| DbError::Create {
                name: name.clone(),
                source,
            })?;
    if !exists {
        let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(source) = sqlx::query(&statement).execute(&mut conn).await {
            // Another pod may have created it between our check and our CREATE: that is success.
            if !is_duplicate_database(&source) {
                return Err(DbError::Create { name, source });
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

fn is_duplicate_database(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "42P04" || code == "23505")
}

async fn connect_with_retry(options: &PgConnectOptions) -> Result<sqlx::PgConnection, sqlx::Error> {
    use backon::{ExponentialBuilder, Retryable};
    (|| async { options.connect().await })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(2))
                .with_max_times(3)
                .with_jitter(),
        )
        .when(|e| matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut))
        .await
}

/// Proves the PostgreSQL server answers (the database itself may not exist yet).
pub async fn migrate_check_reachable(settings: &DatabaseSettings) -> Result<(), DbError> {
    let options = options(settings)?.database("postgres");
    let target = describe(&options);
    let conn = tokio::time::timeout(settings.acquire_timeout, options.connect())
        .await
        .map_err(|_| DbError::Unreachable {
            target: target.clone(),
            source: sqlx::Error::PoolTimedOut,
        })?
        .map_err(|source| DbError::Unreachable { target, source })?;
    let _ = conn.close().await;
    Ok(())
}

/// True when the database answers a trivial query within `timeout`.
pub async fn ping(pool: &PgPool, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool)).await,
        Ok(Ok(_))
    )
}
