//! The benchmark suite behind `make bench`: the broker's own limit as a baseline, then the fleet's
//! send throughput (1 and 2 sender processes), enqueue-to-sent latency at a fixed offered load,
//! pause propagation under load, where a message's time goes, and the digest worker's notification
//! batching (100,000 events for 10,000 keys, flushed); when named, webhook traffic, the incident
//! fan-out, a large message table, the costs at growing table sizes, the retention job, HTTP
//! enqueue, release after a pause, a large backlog, the whole loop and the senders' scale-out
//! under CPU quotas.
//! Everything runs on this machine's RabbitMQ and PostgreSQL, against the sandbox provider, on
//! loopback only.

mod backlog;
mod baseline;
mod cpu_quota;
mod digest;
mod http_enqueue;
mod incidents;
mod load;
mod procs;
mod release;
mod retention_cost;
mod scale;
mod scaling;
mod scenarios;
mod send_phase;
mod size;
mod stats;
mod status;
mod webhooks;
mod whole_loop;

use std::time::Instant;

use anyhow::Context;
use comms_runtime::settings::Settings;

pub use stats::percentile;

/// Benchmark knobs: flags, or the `BENCH_*` environment variables so `make bench` stays one
/// command. Settings (`COMMS__*`) come from the environment as for every binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "comms-bench",
    version,
    about = "Run the benchmark suite on this machine's RabbitMQ and PostgreSQL (docs/benchmarks.md)"
)]
pub struct Knobs {
    /// Messages in each throughput run.
    #[arg(long, env = "BENCH_MESSAGES", default_value_t = 50_000)]
    pub messages: usize,
    /// Offered load of the latency run, messages per second.
    #[arg(long, env = "BENCH_RATE", default_value_t = 1000)]
    pub rate: usize,
    /// Length of the latency run in seconds.
    #[arg(long, env = "BENCH_RATE_SECONDS", default_value_t = 15)]
    pub rate_seconds: usize,
    /// Pauses in the propagation run.
    #[arg(long, env = "BENCH_PAUSES", default_value_t = 20)]
    pub pauses: usize,
    /// Recipients (contacts) of the incident fan-out run.
    #[arg(long, env = "BENCH_RECIPIENTS", default_value_t = 100_000)]
    pub recipients: usize,
    /// Clients the incident affects; the recipients are spread evenly over them.
    #[arg(long, env = "BENCH_CLIENTS", default_value_t = 1000)]
    pub clients: usize,
    /// Held messages of the release-after-resume run (`BENCH_ONLY=release`).
    #[arg(long, env = "BENCH_HELD", default_value_t = 100_000)]
    pub held: usize,
    /// Addresses the held messages of `BENCH_ONLY=release` are spread over.
    #[arg(long, env = "BENCH_RELEASE_RECIPIENTS", default_value_t = 1000)]
    pub release_recipients: usize,
    /// Requests waiting in the send queues when the sender of `BENCH_ONLY=backlog` starts.
    #[arg(long, env = "BENCH_BACKLOG", default_value_t = 1_000_000)]
    pub backlog: usize,
    /// Seconds each offered rate of `BENCH_ONLY=loop` is held.
    #[arg(long, env = "BENCH_LOOP_SECONDS", default_value_t = 60)]
    pub loop_seconds: u64,
    /// Run one scenario only: status, pause, send, digest, or webhooks, incidents, scale, size,
    /// retention, http, release, backlog, loop, scaling (the last ten run only when named).
    #[arg(long, env = "BENCH_ONLY", value_parser = [
        "status", "pause", "send", "digest", "webhooks", "incidents", "scale", "size", "retention",
        "http", "release", "backlog", "loop", "scaling",
    ])]
    pub only: Option<String>,
    /// Messages generated for `BENCH_ONLY=scale`.
    #[arg(long, env = "BENCH_SCALE_MESSAGES", default_value_t = 10_000_000)]
    pub scale_messages: i64,
    /// Existing messages `BENCH_ONLY=size` measures at, comma-separated, ascending.
    #[arg(long, env = "BENCH_SIZES", default_value = "0,1000000,10000000")]
    pub sizes: String,
    /// Expired messages the retention job works through during `BENCH_ONLY=retention`.
    #[arg(long, env = "BENCH_RETENTION_BACKLOG", default_value_t = 300_000)]
    pub retention_backlog: i64,
    /// CPU quota of each sender in `BENCH_ONLY=scaling`, in cores (needs root and cgroups).
    #[arg(long, env = "BENCH_SENDER_CPU", default_value_t = 0.2, value_parser = positive_cores)]
    pub sender_cpu: f64,
    /// Events in the notification-batching run.
    #[arg(long, env = "BENCH_DIGEST_EVENTS", default_value_t = 100_000)]
    pub digest_events: usize,
    /// Batch keys (contacts) the batching run's events are spread over.
    #[arg(long, env = "BENCH_DIGEST_KEYS", default_value_t = 10_000)]
    pub digest_keys: usize,
}

/// A CPU quota in cores: a positive number (refused before anything starts otherwise).
fn positive_cores(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(cores) if cores > 0.0 && cores.is_finite() => Ok(cores),
        _ => Err(format!(
            "expected a positive number of cores, such as 0.2, not {value:?}"
        )),
    }
}

/// Runs every scenario with `knobs` and prints the table.
pub async fn run(knobs: Knobs) -> anyhow::Result<()> {
    let started = Instant::now();
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
