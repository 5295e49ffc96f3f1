//! `BENCH_ONLY=retention`: does the retention job slow sending? Same run, same database: send
//! throughput (1 sender) without the job, then with the job working through a backlog of expired
//! content in its default batches the whole time, then without again.

use std::time::{Duration, Instant};

use comms_domain::privacy::retention;
use comms_runtime::settings::RetentionSettings;

use crate::load::Bench;
use crate::send_phase::throughput_named;

/// Send throughput without and with the retention job running.
pub struct RetentionCost {
    pub without: f64,
    pub with: f64,
    pub without_again: f64,
    /// Rows the job emptied while the "with" run sent, and its rate.
    pub removed: u64,
    pub removed_per_second: f64,
    pub rss: String,
}

/// `backlog` expired messages to work through, `count` messages per send run.
pub async fn measure(bench: &Bench, count: usize, backlog: i64) -> anyhow::Result<RetentionCost> {
    seed(bench, backlog).await?;
    let (without, _) = throughput_named(bench, "rc0-", count, 1).await?;

    let stop = comms_runtime::shutdown::Shutdown::new();
    let job = {
        let (pool, stop) = (bench.pool.clone(), stop.clone());
        tokio::spawn(async move {
            let settings = RetentionSettings::default();
            let (started, mut removed) = (Instant::now(), 0u64);
            while !stop.is_cancelled() {
                let now = chrono::Utc::now();
                match retention::run(&pool, &settings, now, false, "bench", Some(&stop)).await {
                    Ok(report) => removed += report.counts.values().sum::<u64>(),
                    Err(error) => return Err(anyhow::anyhow!("retention run: {error}")),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok((removed, started.elapsed().as_secs_f64()))
        })
    };
    let sent = throughput_named(bench, "rc1-", count, 1).await;
    stop.cancel();
    let (removed, seconds) = job.await??;
    let (with, rss) = sent?;
    let (without_again, _) = throughput_named(bench, "rc2-", count, 1).await?;
    Ok(RetentionCost {
        without,
        with,
        without_again,
        removed,
        removed_per_second: removed as f64 / seconds.max(0.001),
        rss,
    })
}

/// Expired SMS with content (recorded 100 days ago, delivered): the job's backlog.
async fn seed(bench: &Bench, backlog: i64) -> anyhow::Result<()> {
    let contact: uuid::Uuid =
        sqlx::query_scalar("INSERT INTO comms.contacts (name) VALUES ('old') RETURNING id")
            .fetch_one(&bench.pool)
            .await?;
    sqlx::query(
        "INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address,
             owner, source, trigger, record_type, record_id, client_id, template_name, body,
             delivery_state, request, created_at, updated_at, dispatched_at, delivered_at)
         SELECT 'old-' || g, 'sms', 'transactional', $2, '+14155550000', 'bench', 'bench', 'bench',
                'client', $3, $3, 'note', 'Hi there, your update is ready.', 'delivered',
                '{\"recipient\": {\"phone\": \"+14155550000\"}, \"template\": {\"name\": \"note\", \"vars\": {\"name\": \"Old\"}}}',
                now() - interval '100 days', now() - interval '100 days',
                now() - interval '100 days', now() - interval '100 days'
         FROM generate_series(1, $1::bigint) g",
    )
    .bind(backlog)
    .bind(contact)
    .bind(bench.client_id)
    .execute(&bench.pool)
    .await?;
    sqlx::query("VACUUM (ANALYZE) comms.messages")
        .execute(&bench.pool)
        .await?;
    Ok(())
}
