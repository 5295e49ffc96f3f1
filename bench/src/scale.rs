//! `BENCH_ONLY=scale`: do the hot lookups stay fast on a large `comms.messages`?
//!
//! The generator writes `BENCH_SCALE_MESSAGES` (default 10 million) finished messages with one
//! event each, server-side (`generate_series`, in chunks of a million; each chunk's events are
//! written from the insert's `RETURNING`; triggers off for the load so the outbox is not filled),
//! the newest 100 000 still holding content as within retention,
//! the rest already emptied by it. Then it times, over random keys, the three lookups that run on
//! every message — `commsctl message <key>` (`timeline::view`), the sender's idempotency check
//! (the group path's "which keys exist" and the one-message path's read by key) and the status
//! worker's find-by-provider-id — and prints each one's `EXPLAIN (ANALYZE, BUFFERS)`, with those
//! of the status worker's periodic statements (the reconciler's round, the freshness watchdog's
//! check, exactly as the worker runs them), which must read the messages awaiting a status, not
//! the table.

use std::time::Instant;

use sqlx::PgPool;

use crate::load::Bench;
use crate::stats::percentile;

const CHUNK: i64 = 1_000_000;
const WITH_CONTENT: i64 = 100_000;
const SAMPLES: usize = 500;

/// Generates `count` messages and measures the lookups; prints everything.
pub async fn lookups(bench: &Bench, count: i64) -> anyhow::Result<()> {
    let generated = grow(bench, 0, count, count).await?;
    println!(
        "scale: {count} messages and {count} events generated in {generated:.0} s ({})",
        table_size(&bench.pool).await?
    );
    for (what, p50, p99) in time_lookups(&bench.pool, count).await? {
        println!("  {what:<52} p50 {p50:.2} ms, p99 {p99:.2} ms ({SAMPLES} lookups)");
    }
    explain(&bench.pool, count).await
}

/// How many messages the generator has written to this database (its keys are numbered).
pub async fn generated(pool: &PgPool) -> anyhow::Result<i64> {
    let last: Option<String> = sqlx::query_scalar(
        "SELECT max(idempotency_key) FROM comms.messages
         WHERE idempotency_key >= 'scale-' AND idempotency_key < 'scale.'",
    )
    .fetch_one(pool)
    .await?;
    Ok(last
        .and_then(|k| k.trim_start_matches("scale-").parse().ok())
        .unwrap_or(0))
}

/// `comms.messages` and `comms.message_events` on disk, with their indexes.
pub async fn table_size(pool: &PgPool) -> anyhow::Result<String> {
    let (size,): (String,) = sqlx::query_as(
        "SELECT pg_size_pretty(pg_total_relation_size('comms.messages')
                               + pg_total_relation_size('comms.message_events'))",
    )
    .fetch_one(pool)
    .await?;
    Ok(format!("{size} with indexes"))
}

/// The sample keys: spread over the `count` generated messages.
fn sample_keys(count: i64) -> Vec<String> {
    (0..SAMPLES)
        .map(|i| key((i as i64 * 7_919_993 + 13) % count + 1))
        .collect()
}

/// Times each hot lookup over random generated keys: `(what, p50 ms, p99 ms)`.
pub async fn time_lookups(
    pool: &PgPool,
    count: i64,
) -> anyhow::Result<Vec<(&'static str, f64, f64)>> {
    let keys = sample_keys(count);
    let mut timeline = Vec::new();
    let mut exists = Vec::new();
    let mut by_key = Vec::new();
    let mut by_provider = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let at = Instant::now();
        let view = comms_domain::timeline::view(pool, k).await?;
        anyhow::ensure!(view.is_some(), "{k} must exist");
        timeline.push(ms(at));
        let batch: Vec<String> = keys.iter().skip(i).take(32).cloned().collect();
        let at = Instant::now();
        let _: Vec<String> = sqlx::query_scalar(
            "SELECT idempotency_key FROM comms.messages WHERE idempotency_key = ANY($1)",
        )
        .bind(&batch)
        .fetch_all(pool)
        .await?;
        exists.push(ms(at));
        let at = Instant::now();
        let _: Option<(uuid::Uuid, String)> = sqlx::query_as(
            "SELECT id, delivery_state FROM comms.messages WHERE idempotency_key = $1",
        )
        .bind(k)
        .fetch_optional(pool)
        .await?;
        by_key.push(ms(at));
        let at = Instant::now();
        let _: Option<(uuid::Uuid,)> = sqlx::query_as(
            "SELECT id FROM comms.messages WHERE provider = $1 AND provider_message_id = $2",
        )
        .bind("twilio")
        .bind(provider_id(k))
        .fetch_optional(pool)
        .await?;
        by_provider.push(ms(at));
    }
    let mut out = Vec::new();
    for (what, samples) in [
        (
            "commsctl message <key> (timeline::view, 2 queries)",
            &mut timeline,
        ),
        ("sender: which of 32 keys exist (group path)", &mut exists),
        ("sender: read by idempotency key", &mut by_key),
        ("status: find by (provider, provider id)", &mut by_provider),
    ] {
        out.push((what, percentile(samples, 0.50), percentile(samples, 0.99)));
    }
    Ok(out)
}

/// Prints `EXPLAIN (ANALYZE, BUFFERS)` of each hot lookup for one generated key.
pub async fn explain(pool: &PgPool, count: i64) -> anyhow::Result<()> {
    let keys = sample_keys(count);
    let sample = &keys[SAMPLES / 2];
    let id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM comms.messages WHERE idempotency_key = $1")
            .bind(sample)
            .fetch_one(pool)
            .await?;
    let batch = format!(
        "ARRAY[{}]",
        keys.iter()
            .take(32)
            .map(|k| format!("'{k}'"))
            .collect::<Vec<_>>()
            .join(",")
    );
    for (what, sql) in [
        (
            "timeline::view, the message",
            format!(
                "SELECT id, idempotency_key, delivery_state FROM comms.messages WHERE id = NULL OR idempotency_key = '{sample}'"
            ),
        ),
        (
            "timeline::view, its events",
            format!(
                "SELECT occurred_at, event_type, actor, reason, recovery_rule FROM comms.message_events WHERE message_id = '{id}' ORDER BY id"
            ),
        ),
        (
            "sender, group path: keys already recorded",
            format!(
                "SELECT idempotency_key FROM comms.messages WHERE idempotency_key = ANY({batch})"
            ),
        ),
        (
            "status: find by provider id",
            format!(
                "SELECT id FROM comms.messages WHERE provider = 'twilio' AND provider_message_id = '{}'",
                provider_id(sample)
            ),
        ),
    ] {
        let plan: Vec<String> =
            sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"))
                .fetch_all(pool)
                .await?;
        print_plan(what, plan);
    }
    explain_status_reads(pool).await
}

/// The status worker's periodic statements as it runs them, with its default windows
/// (`reconcile_after` 10 min, `freshness_window` 30 min), in a transaction that is rolled back:
/// the reconciler's statement also claims the messages it finds.
async fn explain_status_reads(pool: &PgPool) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let mut tx = pool.begin().await?;
    let reconciler: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}",
        comms_status::reconcile::DUE
    ))
    .bind(now - chrono::Duration::minutes(10))
    .bind(comms_status::reconcile::BATCH)
    .fetch_all(&mut *tx)
    .await?;
    print_plan("status: the reconciler's round", reconciler);
    let watchdog: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}",
        comms_status::watchdog::STALE
    ))
    .bind(now - chrono::Duration::minutes(30))
    .fetch_all(&mut *tx)
    .await?;
    print_plan("status: the freshness watchdog's check", watchdog);
    tx.rollback().await?;
    Ok(())
}

fn print_plan(what: &str, plan: Vec<String>) {
    println!("\nEXPLAIN (ANALYZE, BUFFERS) -- {what}");
    for line in plan {
        println!("  {line}");
    }
}

fn key(n: i64) -> String {
    format!("scale-{n:09}")
}

fn provider_id(key: &str) -> String {
    format!("SM{}", key.trim_start_matches("scale-"))
}

fn ms(at: Instant) -> f64 {
    at.elapsed().as_secs_f64() * 1000.0
}

/// Grows the data set from `from` to `to` generated messages (of a final `total`, which sets
/// their times and which of them still hold content), in chunks (one statement and commit each),
/// then analyses it. Returns the seconds it took.
pub async fn grow(bench: &Bench, from: i64, to: i64, total: i64) -> anyhow::Result<f64> {
    let started = Instant::now();
    if to <= from {
        return Ok(0.0);
    }
    let pool = &bench.pool;
    let contact: uuid::Uuid =
        sqlx::query_scalar("INSERT INTO comms.contacts (name) VALUES (NULL) RETURNING id")
            .fetch_one(pool)
            .await?;
    let mut next = from + 1;
    while next <= to {
        let last = (next + CHUNK - 1).min(to);
        let at = Instant::now();
        load_chunk(pool, bench, contact, next, last, total).await?;
        println!(
            "  rows {next}..{last} in {:.1} s",
            at.elapsed().as_secs_f64()
        );
        next = last + 1;
    }
    sqlx::query("VACUUM (ANALYZE) comms.messages")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM (ANALYZE) comms.message_events")
        .execute(pool)
        .await?;
    Ok(started.elapsed().as_secs_f64())
}

async fn load_chunk(
    pool: &PgPool,
    bench: &Bench,
    contact: uuid::Uuid,
    from: i64,
    to: i64,
    count: i64,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    // A bulk load, not traffic: no outbox rows for these events.
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    // The events come from the insert's own RETURNING: one pass, no re-read of the messages.
    sqlx::query(
        "WITH m AS (
         INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address,
             owner, source, trigger, record_type, record_id, client_id, template_name,
             template_version, body, delivery_state, provider, provider_message_id, request,
             created_at, updated_at, dispatched_at, delivered_at, content_removed_at)
         SELECT 'scale-' || lpad(g::text, 9, '0'), 'sms', 'transactional', $3,
                CASE WHEN g > $4 - $5 THEN '+1415555' || lpad((g % 10000)::text, 4, '0') ELSE 'removed' END,
                'bench', 'bench', 'bench', 'client', $6, $6, 'note', 1,
                CASE WHEN g > $4 - $5 THEN 'Hi there, your update is ready.' END,
                'delivered', 'twilio', 'SM' || lpad(g::text, 9, '0'), '{}'::jsonb,
                t.at, t.at, t.at, t.at, CASE WHEN g > $4 - $5 THEN NULL ELSE t.at END
         FROM generate_series($1::bigint, $2::bigint) g
         CROSS JOIN LATERAL (SELECT now() - make_interval(secs => ($4 - g)::double precision) AS at) t
         RETURNING id, created_at)
         INSERT INTO comms.message_events (message_id, event_type, actor, source, owner, reason, occurred_at)
         SELECT id, 'delivered', 'comms-status', 'bench', 'bench', 'twilio delivered', created_at FROM m",
    )
    .bind(from)
    .bind(to)
    .bind(contact)
    .bind(count)
    .bind(WITH_CONTENT)
    .bind(bench.client_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
