//! `comms-bench`: runs the benchmark suite and prints the table (see docs/benchmarks.md).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    comms_bench::run().await
}
