//! The fleet's binaries as real child processes, so a SIGKILL in the chaos run is a real one: each
//! worker keeps its command and environment, can be killed (`kill -9`) and started again, and
//! writes everything it logs to a file of its own, which the privacy check reads afterwards.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where cargo put the workspace's binaries: next to this test's folder (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary's folder");
    deps.parent().unwrap_or(deps).to_path_buf()
}

/// One worker process of the fleet.
pub struct Proc {
    pub name: String,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Where `/readyz` (or the sandbox's health) answers 200 once it can work.
    pub ready_url: String,
    child: Option<Child>,
    pub starts: u32,
}

impl Proc {
    pub fn new(
        name: &str,
        binary: &str,
        args: &[String],
        env: Vec<(String, String)>,
        logs: &Path,
        ready_url: String,
    ) -> Self {
        let binary = bin_dir().join(binary);
        assert!(
            binary.exists(),
            "{} is missing: build the fleet first (make chaos does)",
            binary.display()
        );
        Self {
            name: name.to_string(),
            binary,
            args: args.to_vec(),
            env,
            log: logs.join(format!("{name}.log")),
            ready_url,
            child: None,
            starts: 0,
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts the process, its output appended to its log file.
    pub fn spawn(&mut self) {
        let file = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("log file")
        };
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file())
            .stderr(file())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", self.name));
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether the process has exited on its own (a crash), with its status.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until `url` answers 200, up to `limit`; returns whether it did.
pub async fn ready(http: &reqwest::Client, url: &str, limit: Duration) -> bool {
    comms_tests::eventually(limit, || async {
        http.get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
}
