//! `comms-bench`: runs the benchmark suite and prints the table (see docs/benchmarks.md).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    comms_bench::run(comms_bench::Knobs::parse()).await
}
