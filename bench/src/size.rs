//! `BENCH_ONLY=size`: do the costs users feel stay flat as the tables grow?
//!
//! A benchmark that starts from an empty database says little about month twelve. This one grows
//! one database through `BENCH_SIZES` existing messages (default 0, 1 million and 10 million, each
//! with its event, written by [`crate::scale::grow`]) and, at each size, in the same run, measures
//! what the empty-database benchmark measures — send throughput (1 sender), enqueue→sent at
//! `BENCH_RATE`, status ingestion — and the lookups of `commsctl message <key>`, the sender's
//! idempotency check and the status worker. At the largest size it prints their
//! `EXPLAIN (ANALYZE, BUFFERS)`. Every run's messages have their own keys, so the sizes only grow.

use crate::load::Bench;
use crate::{Knobs, scale};

/// What one size measured.
struct AtSize {
    rows: i64,
    send: f64,
    p50: f64,
    p99: f64,
    status: f64,
    status_p99: f64,
    /// `commsctl message <key>`: p50 and p99 of its two queries together.
    message: (f64, f64),
}

/// The sizes to measure at, ascending: `BENCH_SIZES`, comma-separated.
fn sizes(text: &str) -> anyhow::Result<Vec<i64>> {
    let mut sizes = text
        .split(',')
        .map(|s| s.trim().replace('_', "").parse::<i64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("BENCH_SIZES: `{text}` is not a list of row counts: {e}"))?;
    sizes.sort_unstable();
    sizes.dedup();
    anyhow::ensure!(
        sizes.first().is_some_and(|s| *s >= 0),
        "BENCH_SIZES: give at least one row count, none negative"
    );
    Ok(sizes)
}

/// Runs the scenario and prints its table and plans.
pub async fn costs(bench: &Bench, knobs: &Knobs) -> anyhow::Result<()> {
    let sizes = sizes(&knobs.sizes)?;
    let total = sizes.last().copied().unwrap_or(0);
    let callbacks = knobs.messages.min(20_000);
    let mut measured: Vec<AtSize> = Vec::new();
    // A reused database (BENCH_REUSE=1) may hold generated messages already: sizes below that
    // count cannot be measured in it.
    let mut rows = scale::generated(&bench.pool).await?;
    // Keys unique to this run and size, so a reused database never sees one twice.
    let run = chrono::Utc::now().timestamp() % 100_000;
    let tags: Vec<String> = (0..sizes.len()).map(|i| format!("{run}x{i}")).collect();
    for (i, &size) in sizes.iter().enumerate() {
        if size < rows {
            println!("size {size}: skipped, the database already holds {rows} generated messages");
            continue;
        }
        let tag = &tags[i];
        let seconds = scale::grow(bench, rows, size, total).await?;
        rows = size;
        println!(
            "size {size}: generated in {seconds:.0} s ({})",
            scale::table_size(&bench.pool).await?
        );
        let (send, _) =
            crate::send_phase::throughput_named(bench, &format!("sz{tag}-"), knobs.messages, 1)
                .await?;
        let (p50, p99, _, _) =
            crate::send_phase::latency_named(bench, knobs, &format!("lz{tag}-")).await?;
        let (status, _, status_p99, _) =
            crate::status::ingestion_tagged(bench, callbacks, tag).await?;
        let message = if size > 0 {
            let lookups = scale::time_lookups(&bench.pool, size).await?;
            lookups.first().map_or((f64::NAN, f64::NAN), |l| (l.1, l.2))
        } else {
            (f64::NAN, f64::NAN)
        };
        println!(
            "size {size}: send {send:.0} msg/s, enqueue→sent p99 {p99:.1} ms, status {status:.0} callbacks/s, \
             commsctl message p99 {:.2} ms",
            message.1
        );
        measured.push(AtSize {
            rows: size,
            send,
            p50,
            p99,
            status,
            status_p99,
            message,
        });
    }
    print(&measured, knobs, callbacks);
    if total > 0 {
        println!("\nlookups at {total} rows:");
        for (what, p50, p99) in scale::time_lookups(&bench.pool, total).await? {
            println!("  {what:<52} p50 {p50:.2} ms, p99 {p99:.2} ms");
        }
        scale::explain(&bench.pool, total).await?;
    }
    Ok(())
}

fn print(measured: &[AtSize], knobs: &Knobs, callbacks: usize) {
    let Some(empty) = measured.first() else {
        return;
    };
    println!(
        "\n| existing messages | send, 1 sender, {} msgs | vs first | enqueue→sent p50 / p99 at {}/s | \
         status ingestion, {callbacks} callbacks | vs first | status p99 | `commsctl message` p50 / p99 |",
        knobs.messages, knobs.rate
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for m in measured {
        let message = if m.message.0.is_nan() {
            "-".to_string()
        } else {
            format!("{:.2} / {:.2} ms", m.message.0, m.message.1)
        };
        println!(
            "| {} | {:.0} msg/s | {:.2} | {:.1} / {:.1} ms | {:.0} /s | {:.2} | {:.0} ms | {message} |",
            m.rows,
            m.send,
            m.send / empty.send,
            m.p50,
            m.p99,
            m.status,
            m.status / empty.status,
            m.status_p99,
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_are_sorted_counts() {
        assert_eq!(
            super::sizes("10_000_000, 0,1000000").expect("sizes"),
            [0, 1_000_000, 10_000_000]
        );
        assert!(super::sizes("0,ten").is_err());
        assert!(super::sizes("-1").is_err());
    }
}
