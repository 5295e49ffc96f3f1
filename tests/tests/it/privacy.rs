//! Privacy over time (docs/privacy.md): erasure of a person, retention of personal content, and
//! the record of who read full addresses.

mod access;
mod erasure;
mod retention;

use sqlx::PgPool;

/// Every row of every table and view the fleet keeps (schemas `comms`, `internal`, `portal`) that
/// holds `needle`, as text or inside raw bytes: `(table, rows)` for each table with a hit.
pub async fn tables_holding(pool: &PgPool, needle: &str) -> Vec<(String, i64)> {
    let relations: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema, table_name FROM information_schema.tables
         WHERE table_schema IN ('comms', 'internal', 'portal') ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("tables");
    let mut hits = Vec::new();
    for (schema, table) in relations {
        let bytea: Vec<String> = sqlx::query_scalar(
            "SELECT column_name FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = $2 AND data_type = 'bytea'",
        )
        .bind(&schema)
        .bind(&table)
        .fetch_all(pool)
        .await
        .expect("columns");
        let mut condition = "t::text ILIKE '%' || $1 || '%'".to_string();
        for column in bytea {
            condition.push_str(&format!(
                " OR position(convert_to($1, 'UTF8') IN t.\"{column}\") > 0"
            ));
        }
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{schema}\".\"{table}\" t WHERE {condition}"
        ))
        .bind(needle)
        .fetch_one(pool)
        .await
        .expect("search");
        if count > 0 {
            hits.push((format!("{schema}.{table}"), count));
        }
    }
    hits
}

/// Dead letters waiting in `comms.dead` whose body or headers hold `needle`. It reads every
/// message without acking and closes its channel, so the broker puts them all back.
pub async fn dead_letters_holding(env: &comms_tests::TestEnv, needle: &str) -> usize {
    use lapin::options::BasicGetOptions;
    let channel = env.connection.create_channel().await.expect("channel");
    let queue = env.topology.dead_queue();
    let mut hits = 0;
    while let Some(message) = channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .expect("basic.get")
    {
        let headers = format!("{:?}", message.properties.headers());
        let body = &message.delivery.data;
        let in_body = body.windows(needle.len()).any(|w| w == needle.as_bytes());
        if in_body || headers.contains(needle) {
            hits += 1;
        }
    }
    let _ = channel.close(200, "put back".into()).await;
    hits
}
