//! `BENCH_ONLY=scaling`: what a second sender process adds when each sender has CPU of its own,
//! as each pod does under its Kubernetes CPU limit. One sender, then two, each held to
//! `BENCH_SENDER_CPU` cores by a control group of its own ([`crate::cpu_quota`]), drain the same
//! number of pre-published requests, then one sender again; the figure is two senders' rate over
//! the mean of the two one-sender runs, with each sender's
//! CPU use and how often its quota ran out, which show whether the senders or what they share (the
//! database, the broker, the sandbox on the same two cores) set the pace.

use std::time::Duration;

use anyhow::Context;

use crate::cpu_quota::{self, CpuQuota};
use crate::load::Bench;
use crate::procs::Worker;
use crate::send_phase::{
    GROUP_SIZE_STAGE, prepublish, sent_rate, stage_means, start_senders, stop_senders,
};
use crate::stats::Row;

/// One phase: `senders` processes, each under its own quota.
pub struct Phase {
    pub senders: usize,
    pub rate: f64,
    /// Mean CPU of one sender over the phase, in cores.
    pub cores_per_sender: f64,
    /// Mean messages a sender decided together (its `comms_sender_group_size`).
    pub group_size: f64,
    /// The largest share of scheduling periods in which a sender's quota ran out.
    pub throttled: f64,
    pub rss: String,
}

pub struct Scaling {
    pub quota_cores: f64,
    pub phases: Vec<Phase>,
}

impl Scaling {
    /// Two senders' rate over the mean of one sender's before and after it, so a machine that
    /// drifts between phases (or a database still cold in the first) does not make the ratio.
    pub fn gain(&self) -> f64 {
        match self.phases.as_slice() {
            [before, two, after] => two.rate / ((before.rate + after.rate) / 2.0),
            _ => f64::NAN,
        }
    }
}

pub async fn measure(bench: &Bench, count: usize, quota_cores: f64) -> anyhow::Result<Scaling> {
    // Not reported: the first drain on a fresh database pays for its cold caches and the
    // senders' first statement preparations (a third more CPU per message in trial runs).
    phase(bench, (count / 4).max(1), 0, 1, quota_cores).await?;
    let mut phases = Vec::new();
    for (round, senders) in [1, 2, 1].into_iter().enumerate() {
        phases.push(phase(bench, count, round + 1, senders, quota_cores).await?);
    }
    Ok(Scaling {
        quota_cores,
        phases,
    })
}

async fn phase(
    bench: &Bench,
    count: usize,
    round: usize,
    senders: usize,
    quota_cores: f64,
) -> anyhow::Result<Phase> {
    let prefix = format!("sc{round}s{senders}-");
    let since = prepublish(bench, &prefix, count).await?;
    let workers = start_senders(bench, senders)?;
    let quotas = match held_to_quotas(&workers, quota_cores) {
        Ok(held) => held,
        Err(error) => {
            stop_senders(workers).await;
            return Err(error);
        }
    };
    let waited = bench
        .wait_sent(&prefix, since, count, Duration::from_secs(1200))
        .await;
    let mut cpu_seconds = 0.0;
    for (worker, _) in &workers {
        let pid = worker
            .pid()
            .with_context(|| format!("{} exited during the drain", worker.name))?;
        cpu_seconds += cpu_quota::cpu_seconds(pid)?;
    }
    let mut throttled: f64 = 0.0;
    for quota in &quotas {
        throttled = throttled.max(quota.throttling()?.share());
    }
    let mut group_sizes = Vec::new();
    for (worker, port) in &workers {
        let stages = stage_means(*port)
            .await
            .with_context(|| format!("reading {}'s /metrics after the drain", worker.name))?;
        if let Some((_, size)) = stages.iter().find(|(stage, _)| stage == GROUP_SIZE_STAGE) {
            group_sizes.push(*size);
        }
    }
    let rss = stop_senders(workers).await;
    drop(quotas);
    waited?;
    let rate = sent_rate(bench, &prefix, since, count).await?;
    // Over the span from the first to the last dispatch (the senders' start-up CPU counts too).
    let seconds = count as f64 / rate;
    Ok(Phase {
        senders,
        rate,
        cores_per_sender: cpu_seconds / seconds / senders as f64,
        group_size: group_sizes.iter().sum::<f64>() / group_sizes.len().max(1) as f64,
        throttled,
        rss,
    })
}

/// Puts each sender in a control group of its own with a quota of `quota_cores`.
fn held_to_quotas(workers: &[(Worker, u16)], quota_cores: f64) -> anyhow::Result<Vec<CpuQuota>> {
    let mut quotas = Vec::new();
    for (i, (worker, _)) in workers.iter().enumerate() {
        let quota = CpuQuota::create(
            &format!("comms-bench-{}-sender-{i}", std::process::id()),
            quota_cores,
        )?;
        let pid = worker.pid().ok_or_else(|| {
            anyhow::anyhow!("{} exited before it could be given its quota", worker.name)
        })?;
        quota.add(pid)?;
        quotas.push(quota);
    }
    Ok(quotas)
}

pub fn report(run: &Scaling) {
    println!(
        "\nsender scale-out, each sender held to {:.2} of a core (its own control group):\n",
        run.quota_cores
    );
    println!(
        "| senders | msg/s | CPU per sender (cores) | CPU ms per message | messages per group | periods throttled (max) | peak RSS (MiB) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for p in &run.phases {
        println!(
            "| {} | {:.0} | {:.2} | {:.3} | {:.1} | {:.0}% | {} |",
            p.senders,
            p.rate,
            p.cores_per_sender,
            p.cores_per_sender * p.senders as f64 / p.rate * 1000.0,
            p.group_size,
            p.throttled * 100.0,
            p.rss
        );
    }
    println!(
        "\ntwo senders send {:.2}× what one sends (the mean of the runs before and after)",
        run.gain()
    );
}

pub fn rows(run: &Scaling) -> Vec<Row> {
    run.phases
        .iter()
        .map(|p| Row {
            scenario: format!(
                "send, {} sender process(es) each held to {:.2} core",
                p.senders, run.quota_cores
            ),
            throughput: Some(p.rate),
            unit: "msg/s",
            ratio: None,
            p50_ms: None,
            p99_ms: None,
            rss: p.rss.clone(),
        })
        .collect()
}
