//! The benchmark suite behind `make bench`: the broker's own limit as a baseline, then the fleet's
//! send throughput (1 and 2 sender processes), enqueue-to-sent latency at a fixed offered load,
//! pause propagation under load, and where a message's time goes. Everything runs on this
//! machine's RabbitMQ and PostgreSQL, against the sandbox provider, on loopback only.

mod baseline;
mod load;
mod procs;
mod scenarios;
mod stats;
mod status;

use std::time::Instant;

use anyhow::Context;
use comms_shared::settings::Settings;

pub use stats::percentile;

/// Benchmark knobs, from the environment so `make bench` stays one command.
pub struct Knobs {
    /// Messages in each throughput run (`BENCH_MESSAGES`, default 50 000).
    pub messages: usize,
    /// Offered load of the latency run (`BENCH_RATE`, default 1000/s) and its length in seconds.
    pub rate: usize,
    pub rate_seconds: usize,
    /// Pauses in the propagation run (`BENCH_PAUSES`, default 20).
    pub pauses: usize,
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let knobs = Knobs {
        messages: knob("BENCH_MESSAGES", 50_000),
        rate: knob("BENCH_RATE", 1000),
        rate_seconds: knob("BENCH_RATE_SECONDS", 15),
        pauses: knob("BENCH_PAUSES", 20),
    };
    let base = Settings::load().context("loading settings")?;
    let bench = load::Bench::prepare(base).await?;
    println!(
        "comms-fleet benchmarks: {} messages per throughput run, {}/s for {}s offered load, {} pauses",
        knobs.messages, knobs.rate, knobs.rate_seconds, knobs.pauses
    );
    let rows = scenarios::all(&bench, &knobs).await;
    bench.cleanup().await;
    let rows = rows?;
    stats::print(&rows, started.elapsed());
    Ok(())
}
