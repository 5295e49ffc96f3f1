//! `commsctl status`: can the fleet reach its broker and database, and how much work waits.

use std::time::Duration;

use comms_runtime::queues::{self, QueueDepth};
use comms_runtime::settings::Settings;
use comms_runtime::topology::Topology;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub broker: Reachability,
    pub database: Reachability,
    pub queues: Vec<QueueDepth>,
    pub messages_by_state: Vec<StateCount>,
}

#[derive(Debug, Serialize)]
pub struct Reachability {
    pub reachable: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StateCount {
    pub state: String,
    pub count: i64,
}

/// Gathers the report; unreachable parts are reported, never an error.
pub async fn status_report(settings: &Settings) -> StatusReport {
    let topology = Topology::new(settings.amqp.namespace.clone());
    let mut names: Vec<String> = topology.work_queues().into_iter().map(|q| q.name).collect();
    names.push(topology.dead_queue());
    let (broker, queues) = broker_status(settings, &names).await;
    let (database, messages_by_state) = database_status(settings).await;
    StatusReport {
        broker,
        database,
        queues,
        messages_by_state,
    }
}

async fn broker_status(settings: &Settings, names: &[String]) -> (Reachability, Vec<QueueDepth>) {
    let unknown = |names: &[String]| names.iter().map(|n| QueueDepth::unknown(n)).collect();
    let connect = tokio::time::timeout(
        Duration::from_secs(5),
        comms_runtime::amqp::connect(&settings.amqp, "commsctl"),
    )
    .await;
    let connection = match connect {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return (unreachable(e.to_string()), unknown(names)),
        Err(_) => return (unreachable("timed out after 5s".into()), unknown(names)),
    };
    let mut depths = Vec::new();
    for name in names {
        // A passive declare fails on a missing queue and closes the channel: one channel each.
        let depth = match connection.create_channel().await {
            Ok(channel) => {
                let depth = queues::depth(&channel, name).await;
                let _ = channel.close(200, "done".into()).await;
                depth
            }
            Err(_) => QueueDepth::unknown(name),
        };
        depths.push(depth);
    }
    let _ = connection.close(200, "done".into()).await;
    (
        Reachability {
            reachable: true,
            error: None,
        },
        depths,
    )
}

async fn database_status(settings: &Settings) -> (Reachability, Vec<StateCount>) {
    let pool = match comms_runtime::db::connect(&settings.database).await {
        Ok(pool) => pool,
        Err(e) => return (unreachable(e.to_string()), Vec::new()),
    };
    let rows: Result<Vec<(String, i64)>, _> =
        sqlx::query_as("SELECT delivery_state, count(*) FROM comms.messages GROUP BY 1 ORDER BY 1")
            .fetch_all(&pool)
            .await;
    pool.close().await;
    match rows {
        Ok(rows) => (
            Reachability {
                reachable: true,
                error: None,
            },
            rows.into_iter()
                .map(|(state, count)| StateCount { state, count })
                .collect(),
        ),
        Err(e) => (
            Reachability {
                reachable: true,
                error: Some(format!("reachable, but not migrated? {e}")),
            },
            Vec::new(),
        ),
    }
}

fn unreachable(error: String) -> Reachability {
    Reachability {
        reachable: false,
        error: Some(error),
    }
}

pub async fn run(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let report = status_report(settings).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if !report.broker.reachable || !report.database.reachable {
        anyhow::bail!(
            "the fleet's broker or database is unreachable (start them with `make services`)"
        );
    }
    Ok(())
}

fn print_table(report: &StatusReport) {
    let show = |name: &str, r: &Reachability| match &r.error {
        None => println!("{name:<10} ok"),
        Some(e) if r.reachable => println!("{name:<10} ok ({e})"),
        Some(e) => println!("{name:<10} UNREACHABLE: {e}"),
    };
    show("broker", &report.broker);
    show("database", &report.database);
    println!("\n{:<32} {:>9} {:>10}", "QUEUE", "MESSAGES", "CONSUMERS");
    for q in &report.queues {
        let n = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        println!(
            "{:<32} {:>9} {:>10}",
            q.queue,
            n(q.messages),
            n(q.consumers)
        );
    }
    println!("\n{:<20} {:>9}", "MESSAGE STATE", "COUNT");
    if report.messages_by_state.is_empty() {
        println!("(no messages)");
    }
    for s in &report.messages_by_state {
        println!("{:<20} {:>9}", s.state, s.count);
    }
}
