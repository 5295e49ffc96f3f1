//! A PostgreSQL cluster of a test's own, on a free loopback port, that the test may restart.
//!
//! The machine's PostgreSQL on 5432 serves everyone's tests (and other people's work), so a test
//! that needs a database outage creates a second cluster with `initdb` in a folder under the
//! temporary directory, runs it with `pg_ctl`, and removes it afterwards. PostgreSQL refuses to
//! run as root, so when the test runs as root every command runs as the `postgres` user
//! (`runuser`). The binaries are the machine's newest installed version
//! (`/usr/lib/postgresql/<version>/bin`, or the `PATH`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running private cluster; dropped, it is stopped and its folder removed.
pub struct PrivatePostgres {
    /// `127.0.0.1`
    pub host: String,
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The folder of the newest installed server binaries, or empty to use the `PATH`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_default()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PrivatePostgres {
    /// Creates the cluster (trust authentication, user `postgres`, fsync off: a test's data
    /// need not survive a power cut) and starts it. Panics with the tools' own words when it cannot.
    pub fn start() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("comms-postgres-{}", &id[..10]));
        std::fs::create_dir_all(&dir).expect("cluster folder");
        let as_postgres = is_root();
        if as_postgres {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
        }
        let cluster = Self {
            host: "127.0.0.1".into(),
            port: free_port(),
            dir,
            bin: bin_dir(),
            as_postgres,
        };
        let data = cluster.data().to_string_lossy().into_owned();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n",
            cluster.port,
            cluster.dir.to_string_lossy()
        );
        let conf = cluster.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&options);
        std::fs::write(&conf, text).expect("postgresql.conf");
        cluster.start_server();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's own log (pg_ctl's `-l`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@{}:{}/{database}", self.host, self.port)
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let program = if self.bin.as_os_str().is_empty() {
            PathBuf::from(tool)
        } else {
            self.bin.join(tool)
        };
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.args(args).current_dir(Path::new("/"));
        command
    }

    fn output(&self, tool: &str, args: &[&str]) -> Output {
        self.command(tool, args)
            .output()
            .unwrap_or_else(|e| panic!("{tool} could not run ({e}); is PostgreSQL installed?"))
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let output = self.output(tool, args);
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn pg_ctl(&self, action: &[&str]) {
        let data = self.data().to_string_lossy().into_owned();
        let log = self.log_path().to_string_lossy().into_owned();
        let mut args = vec!["-D", data.as_str(), "-l", log.as_str(), "-w", "-t", "60"];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args);
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_server(&self) {
        self.pg_ctl(&["start"]);
    }

    /// Stops the server (fast shutdown: open sessions are ended, as on a host's restart).
    pub fn stop_server(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
    }

    /// `pg_ctl restart`: stop (fast), then start, waiting for each.
    pub fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "restart"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data().to_string_lossy().into_owned();
        let _ = self
            .command("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
