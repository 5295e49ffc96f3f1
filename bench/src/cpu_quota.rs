//! CPU quotas for benchmark worker processes. On this machine the senders, PostgreSQL, RabbitMQ
//! and the sandbox share two cores, so a second sender process mostly takes CPU from the
//! database it waits on. `BENCH_ONLY=scaling` instead holds each sender to a fixed share of one
//! core in a control group of its own — the mechanism Kubernetes uses for a pod's CPU limit — so
//! the run shows what one more sender process adds when each has the CPU of its own pod.
//!
//! Needs a writable cgroup file system (cgroup v1 `cpu` controller or cgroup v2 with `cpu`
//! available to children), which is the case when the bench runs as root on a plain machine.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The CFS period quotas are expressed in (100 ms, the kernel's default).
const PERIOD_MICROS: u64 = 100_000;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, fixed at 100 on Linux's ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// One control group holding its processes to `cores` of CPU time; removed when dropped.
pub struct CpuQuota {
    dir: PathBuf,
}

/// How often the kernel held the group's processes back for having used their quota.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled: u64,
}

impl Throttling {
    /// The share of scheduling periods in which the quota ran out.
    pub fn share(&self) -> f64 {
        if self.periods == 0 {
            0.0
        } else {
            self.throttled as f64 / self.periods as f64
        }
    }
}

impl CpuQuota {
    /// Creates the group `name` under the machine's cgroup file system with a quota of `cores`.
    pub fn create(name: &str, cores: f64) -> anyhow::Result<Self> {
        anyhow::ensure!(
            cores > 0.0 && cores.is_finite(),
            "a CPU quota must be a positive number of cores, not {cores}"
        );
        let quota = (cores * PERIOD_MICROS as f64).round().max(1000.0) as u64;
        let v2_root = Path::new("/sys/fs/cgroup");
        let v1_root = v2_root.join("cpu");
        let (dir, files) = if v2_root.join("cgroup.controllers").exists() {
            let dir = v2_root.join(name);
            // Children of the root can use the cpu controller only once it is delegated to them.
            let _ = std::fs::write(v2_root.join("cgroup.subtree_control"), "+cpu");
            (dir, vec![("cpu.max", format!("{quota} {PERIOD_MICROS}"))])
        } else if v1_root.join("cpu.cfs_quota_us").exists() {
            (
                v1_root.join(name),
                vec![
                    ("cpu.cfs_period_us", PERIOD_MICROS.to_string()),
                    ("cpu.cfs_quota_us", quota.to_string()),
                ],
            )
        } else {
            anyhow::bail!(
                "no cgroup cpu controller under /sys/fs/cgroup: BENCH_ONLY=scaling needs one to hold each sender to its CPU quota"
            );
        };
        std::fs::create_dir_all(&dir).with_context(|| {
            format!(
                "creating the control group {} (BENCH_ONLY=scaling must run as root on a writable cgroup file system)",
                dir.display()
            )
        })?;
        let group = Self { dir };
        for (file, value) in files {
            std::fs::write(group.dir.join(file), &value)
                .with_context(|| format!("setting {file} of {} to {value}", group.dir.display()))?;
        }
        Ok(group)
    }

    /// Moves process `pid`, with all its threads, into the group.
    pub fn add(&self, pid: u32) -> anyhow::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving process {pid} into {}", self.dir.display()))
    }

    /// The group's throttling counters so far.
    pub fn throttling(&self) -> anyhow::Result<Throttling> {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat"))
            .with_context(|| format!("reading {}/cpu.stat", self.dir.display()))?;
        parse_throttling(&stat)
    }
}

impl Drop for CpuQuota {
    /// Hands any process still in the group back to the parent group, then removes the group
    /// (the kernel refuses to remove a group that holds a process).
    fn drop(&mut self) {
        if let (Ok(procs), Some(parent)) = (
            std::fs::read_to_string(self.dir.join("cgroup.procs")),
            self.dir.parent(),
        ) {
            for pid in procs.split_whitespace() {
                let _ = std::fs::write(parent.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn parse_throttling(stat: &str) -> anyhow::Result<Throttling> {
    let field = |name: &str| -> anyhow::Result<u64> {
        stat.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .with_context(|| format!("cpu.stat has no {name}"))?
            .trim()
            .parse()
            .with_context(|| format!("cpu.stat's {name} is not a number"))
    };
    Ok(Throttling {
        periods: field("nr_periods")?,
        throttled: field("nr_throttled")?,
    })
}

/// CPU seconds (user and system, all threads) process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_seconds(&stat)
}

fn parse_cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    // The command name (field 2) is in parentheses and may hold spaces; fields after it are
    // counted from the last ')'. utime and stime are fields 14 and 15 of the whole line.
    let after_name = stat
        .rsplit_once(')')
        .context("/proc/<pid>/stat has no command name")?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(index)
            .context("/proc/<pid>/stat is shorter than expected")?
            .parse::<u64>()? as f64)
    };
    // After the name, field 3 (state) is index 0, so field n is index n - 3.
    Ok((ticks(14 - 3)? + ticks(15 - 3)?) / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_read_from_either_cgroup_versions_cpu_stat() {
        let v1 = "nr_periods 200\nnr_throttled 150\nthrottled_time 9000000\n";
        let v2 = "usage_usec 10\nuser_usec 5\nsystem_usec 5\nnr_periods 40\nnr_throttled 10\nthrottled_usec 7\n";
        assert_eq!(parse_throttling(v1).expect("v1 cpu.stat").share(), 0.75);
        assert_eq!(parse_throttling(v2).expect("v2 cpu.stat").share(), 0.25);
        assert!(parse_throttling("usage_usec 10\n").is_err());
    }

    #[test]
    fn cpu_time_counts_user_and_system_ticks_after_a_name_with_spaces() {
        let stat = "4242 (comms sender) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 150 0 0 20 0 9 0";
        assert_eq!(parse_cpu_seconds(stat).expect("a full stat line"), 4.0);
        assert!(parse_cpu_seconds("4242 (x) S 1").is_err());
    }
}
