//! Worker processes for a benchmark run: the real binaries, started as children with their own
//! environment, so each one's peak memory (VmHWM) is its own and nothing runs inside the bench.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

pub struct Worker {
    pub name: String,
    child: Child,
}

/// The directory holding the release binaries (next to this bench binary).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    Ok(exe
        .parent()
        .context("bench binary has no folder")?
        .to_path_buf())
}

/// A free loopback port (bound then released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Worker {
    pub fn start(
        name: &str,
        binary: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let path = bin_dir()?.join(binary);
        let mut command = Command::new(&path);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .env("COMMS__LOG__LEVEL", "warn");
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().with_context(|| {
            format!(
                "starting {} (run `cargo build --release` first)",
                path.display()
            )
        })?;
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    /// The process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Peak resident memory so far, in MiB (from /proc).
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// SIGTERM, then wait for a clean exit (the drain), then kill.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Waits until `url` answers 200 or `limit` passes.
pub async fn wait_http(url: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(
                url.trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap_or_default(),
            ),
        )
        .await
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let path = url
                .trim_start_matches("http://")
                .split_once('/')
                .map_or("/", |(_, p)| p);
            let request = format!("GET /{path} HTTP/1.0\r\nHost: x\r\n\r\n");
            if stream.write_all(request.as_bytes()).await.is_ok() {
                let mut buf = [0u8; 16];
                if let Ok(n) = stream.read(&mut buf).await
                    && (buf[..n].starts_with(b"HTTP/1.1 200")
                        || buf[..n].starts_with(b"HTTP/1.0 200"))
                {
                    return Ok(());
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{url} did not become ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
