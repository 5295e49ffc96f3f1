//! `BENCH_ONLY=scale`: do the hot lookups stay fast on a large `comms.messages`?
//!
//! The generator writes `BENCH_SCALE_MESSAGES` (default 10 million) finished messages with one
//! event each, server-side (`generate_series`, in chunks of a million, triggers off for the load
//! so the outbox is not filled), the newest 100 000 still holding content as within retention,
//! the rest already emptied by it. Then it times, over random keys, the three lookups that run on
//! every message — `commsctl message <key>` (`timeline::view`), the sender's idempotency check
//! (the group path's "which keys exist" and the one-message path's read by key) and the status
//! worker's find-by-provider-id — and prints each one's `EXPLAIN (ANALYZE, BUFFERS)`.

use std::time::Instant;

use sqlx::PgPool;

use crate::load::Bench;
use crate::stats::percentile;

const CHUNK: i64 = 1_000_000;
const WITH_CONTENT: i64 = 100_000;
const SAMPLES: usize = 500;

/// Generates `count` messages and measures the lookups; prints everything.
pub async fn lookups(bench: &Bench, count: i64) -> anyhow::Result<()> {
    let pool = &bench.pool;
    let started = Instant::now();
    generate(bench, count).await?;
    let generated = started.elapsed().as_secs_f64();
    let (size,): (String,) = sqlx::query_as(
        "SELECT pg_size_pretty(pg_total_relation_size('comms.messages')
                               + pg_total_relation_size('comms.message_events'))",
    )
    .fetch_one(pool)
    .await?;
    println!(
        "scale: {count} messages and {count} events generated in {generated:.0} s ({size} with indexes)"
    );

    let keys: Vec<String> = (0..SAMPLES)
        .map(|i| key((i as i64 * 7_919_993 + 13) % count + 1))
        .collect();
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
    for (what, samples) in [
        (
            "commsctl message <key> (timeline::view, 2 queries)",
            &mut timeline,
        ),
        ("sender: which of 32 keys exist (group path)", &mut exists),
        ("sender: read by idempotency key", &mut by_key),
        ("status: find by (provider, provider id)", &mut by_provider),
    ] {
        println!(
            "  {what:<52} p50 {:.2} ms, p99 {:.2} ms ({SAMPLES} lookups)",
            percentile(samples, 0.50),
            percentile(samples, 0.99)
        );
    }
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
        println!("\nEXPLAIN (ANALYZE, BUFFERS) -- {what}");
        let plan: Vec<String> =
            sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"))
                .fetch_all(pool)
                .await?;
        for line in plan {
            println!("  {line}");
        }
    }
    Ok(())
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

/// Writes the data set in chunks (one statement and commit each), then analyses it.
async fn generate(bench: &Bench, count: i64) -> anyhow::Result<()> {
    let pool = &bench.pool;
    let contact: uuid::Uuid =
        sqlx::query_scalar("INSERT INTO comms.contacts (name) VALUES (NULL) RETURNING id")
            .fetch_one(pool)
            .await?;
    let mut from = 1;
    while from <= count {
        let to = (from + CHUNK - 1).min(count);
        let at = Instant::now();
        load_chunk(pool, bench, contact, from, to, count).await?;
        println!("  rows {from}..{to} in {:.1} s", at.elapsed().as_secs_f64());
        from = to + 1;
    }
    sqlx::query("VACUUM (ANALYZE) comms.messages")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM (ANALYZE) comms.message_events")
        .execute(pool)
        .await?;
    Ok(())
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
    sqlx::query(
        "INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address,
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
         CROSS JOIN LATERAL (SELECT now() - make_interval(secs => ($4 - g)::double precision) AS at) t",
    )
    .bind(from)
    .bind(to)
    .bind(contact)
    .bind(count)
    .bind(WITH_CONTENT)
    .bind(bench.client_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO comms.message_events (message_id, event_type, actor, source, owner, reason, occurred_at)
         SELECT id, 'delivered', 'comms-status', 'bench', 'bench', 'twilio delivered', created_at
         FROM comms.messages WHERE idempotency_key BETWEEN $1 AND $2",
    )
    .bind(key(from))
    .bind(key(to))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
