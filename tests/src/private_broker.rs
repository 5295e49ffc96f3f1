//! A RabbitMQ node of a test's own, on free loopback ports, that the test may stop and start.
//!
//! Restarting the machine's broker would break every other test running at that moment (and
//! other people's work on the machine), so a test that needs a broker outage starts a second
//! node with its own name, data directory and ports from the machine's RabbitMQ installation,
//! and removes it afterwards. Starting a node needs the rights `rabbitmq-server` needs (root, or
//! the `rabbitmq` user); the node runs as the `rabbitmq` user when started by root.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct PrivateBroker {
    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`
    pub url: String,
    node: String,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl PrivateBroker {
    /// Starts the node and waits until it accepts work. Panics, with the node's own words, when
    /// it cannot.
    pub fn start() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let node = format!("commstest{}@localhost", &id[..10]);
        let dir = std::env::temp_dir().join(format!("comms-rabbitmq-{}", &id[..10]));
        let (amqp_port, dist_port) = (free_port(), free_port());
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("broker directories");
        }
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{amqp_port}\n"),
        )
        .expect("broker config");
        std::fs::write(dir.join("env.conf"), format!("NODENAME={node}\n")).expect("broker env");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("broker plugins");
        // rabbitmq-server drops to the rabbitmq user when started as root.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&dir)
            .status();
        let path = |p: &str| dir.join(p).to_string_lossy().into_owned();
        let env = vec![
            ("RABBITMQ_NODENAME".to_string(), node.clone()),
            ("RABBITMQ_CONF_ENV_FILE".to_string(), path("env.conf")),
            ("RABBITMQ_CONFIG_FILE".to_string(), path("rabbitmq")),
            ("RABBITMQ_MNESIA_BASE".to_string(), path("mnesia")),
            ("RABBITMQ_LOG_BASE".to_string(), path("log")),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE".to_string(),
                path("enabled_plugins"),
            ),
            ("RABBITMQ_DIST_PORT".to_string(), dist_port.to_string()),
            (
                "ERL_FLAGS".to_string(),
                "-kernel inet_dist_use_interface {127,0,0,1}".to_string(),
            ),
        ];
        let broker = Self {
            url: format!("amqp://guest:guest@127.0.0.1:{amqp_port}/%2f"),
            node,
            dir,
            env,
        };
        let started = Command::new("rabbitmq-server")
            .arg("-detached")
            .envs(broker.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| {
                panic!("rabbitmq-server could not run ({e}); is RabbitMQ installed?")
            });
        assert!(
            started.success(),
            "rabbitmq-server -detached failed: {started}"
        );
        broker.await_startup();
        broker
    }

    /// Waits until the node runs and accepts work. `rabbitmqctl wait <pid file>` blocks until the
    /// node has written its pid file and finished booting (a node just started detached is not
    /// yet known to `rabbitmqctl await_startup`), with its own timeout.
    fn await_startup(&self) {
        let pid_file = self.pid_file().to_string_lossy().into_owned();
        self.ctl(&["wait", &pid_file, "--timeout", "120"]);
        self.ctl(&["await_startup", "--timeout", "120"]);
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("mnesia").join(format!("{}.pid", self.node))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("rabbitmqctl");
        command
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs `rabbitmqctl -n <node> <args>` and panics with its output when it fails.
    pub fn ctl(&self, args: &[&str]) {
        let output = self
            .command(args)
            .output()
            .unwrap_or_else(|e| panic!("rabbitmqctl could not run ({e})"));
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops the RabbitMQ application (the node stays up, as with `rabbitmqctl stop_app`).
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
    }

    /// Starts the application again and waits until it accepts work.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]);
        self.await_startup();
    }
}

impl Drop for PrivateBroker {
    /// Stops the node, and makes sure it is gone even when `rabbitmqctl` cannot reach it (a node
    /// that never finished starting): its own pid file names the process to kill.
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.pid_file()).ok();
        let stopped = self
            .command(&["stop"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !stopped && let Some(pid) = pid.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
