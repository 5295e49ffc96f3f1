//! `make chaos` and `make chaos-short`: the whole fleet, as separate processes on loopback, under
//! faults — nothing lost, nothing doubled without the documented reason, nothing stuck, nothing
//! personal in the logs (docs/reliability.md, "The chaos run").
//!
//! The run starts a private RabbitMQ node (the workers reach it through a proxy the run can cut),
//! a private PostgreSQL cluster, the sandbox provider posting signed callbacks, and the gateway,
//! two senders, the status and the replies worker from their binaries. Then, phase by phase, it
//! enqueues its share of `CHAOS_MESSAGES` (SMS, email, and portal updates waiting for approval,
//! half of which an owner approves as they come), inflicts one fault a third of the way through,
//! lifts it, and measures how long until every message enqueued before the lift is settled.
//! At the end it counts, against the list of enqueued keys: lost messages, stuck ones,
//! provider duplicates (from the sandbox's record) and whether each is explained, and scans every
//! worker's log for the run's phone numbers, email addresses and tokens.
//!
//! Settings: `CHAOS_MESSAGES` (2000), `CHAOS_FAULTS` (a comma-separated subset of the fault
//! names, default all), `CHAOS_RATE` (offered messages per second, 100), `CHAOS_SETTLE_SECS`
//! (the longest wait for a phase to settle, 150), `CHAOS_REPORT` (a file to write the Markdown
//! table to), `CHAOS_KEEP=1` (keep the run's folder with the logs even when it passes),
//! `CHAOS_TRACES=0` (no trace export; by default the workers export their traces to the run's own
//! collector, and the privacy check searches them too).

mod faults;
mod fleet;
mod ledger;
mod privacy;
mod procs;
mod report;
mod traces;
mod traffic;

use std::sync::Arc;
use std::time::{Duration, Instant};

use comms_runtime::settings::Settings;
use faults::Fault;
use fleet::Fleet;
use traffic::{Enqueued, Upstream};

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn chosen_faults() -> Vec<Fault> {
    match std::env::var("CHAOS_FAULTS") {
        Ok(list) if !list.trim().is_empty() && list.trim() != "all" => list
            .split(',')
            .map(|name| {
                Fault::parse(name).unwrap_or_else(|| panic!("CHAOS_FAULTS: no fault {name:?}"))
            })
            .collect(),
        _ => faults::ALL.to_vec(),
    }
}

fn keys(enqueued: &Enqueued, before: Option<Instant>) -> Vec<String> {
    enqueued
        .lock()
        .expect("enqueued")
        .iter()
        .filter(|(_, at)| before.is_none_or(|b| *at <= b))
        .map(|(n, _)| traffic::key(*n))
        .collect()
}

/// Polls until every one of `keys` is settled, up to `limit`; returns (when progress resumed,
/// when all were settled), both from `from`.
async fn settle(
    fleet: &Fleet,
    keys: &[String],
    from: Instant,
    limit: Duration,
) -> (Option<Duration>, Option<Duration>) {
    let total = keys.len() as i64;
    let mut first = None;
    let mut resumed = None;
    let deadline = Instant::now() + limit;
    let mut report_at = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if Instant::now() >= report_at {
            report_at += Duration::from_secs(10);
            println!(
                "          … {:.0} s: waiting for {}",
                from.elapsed().as_secs_f64(),
                ledger::unsettled(&fleet.pool, keys).await
            );
        }
        if let Some(settled) = ledger::settled(&fleet.pool, keys).await {
            let base = *first.get_or_insert(settled);
            if resumed.is_none() && (settled > base || settled == total) {
                resumed = Some(from.elapsed());
            }
            if settled == total {
                return (resumed, Some(from.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (resumed, None)
}

async fn replies(sandbox: comms_sandbox::SandboxClient, phase: usize, count: usize) -> usize {
    let mut taken = 0;
    for i in 0..count {
        let from = traffic::phone(2 * ((phase * 7 + i) % 50));
        if traffic::reply(&sandbox, &from, &format!("chaos reply {phase}-{i}")).await {
            taken += 1;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    taken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the chaos run: make chaos (20,000 messages) or make chaos-short"]
async fn chaos() {
    let started = Instant::now();
    let messages: usize = setting("CHAOS_MESSAGES", 2000);
    let rate: f64 = setting("CHAOS_RATE", 100.0);
    let limit = Duration::from_secs(setting("CHAOS_SETTLE_SECS", 150));
    let faults = chosen_faults();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("comms-chaos-{}", &id[..10]));
    println!(
        "chaos: {messages} messages, {rate}/s, faults: {}; logs in {}",
        faults
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", "),
        dir.display()
    );
    std::fs::create_dir_all(&dir).expect("run folder");
    let traces = if setting("CHAOS_TRACES", 1u8) == 1 {
        Some(traces::Traces::start(dir.join("traces.txt")).await)
    } else {
        None
    };
    let mut fleet = Fleet::start(dir.clone(), traces.as_ref().map(|t| t.endpoint.as_str())).await;
    println!(
        "[{:>5.1}s] the fleet is ready",
        started.elapsed().as_secs_f64()
    );

    let amqp = Settings::load_from(
        &[("COMMS__AMQP__URL".to_string(), fleet.broker.url.clone())]
            .into_iter()
            .collect(),
    )
    .expect("settings");
    let upstream = Upstream {
        http: fleet.http.clone(),
        gateway_url: fleet.gateway_url.clone(),
        enqueue_key: fleet.keys.enqueue.clone(),
        amqp,
        send_exchange: fleet.topology.send_exchange(),
        client_id: fleet.client_id,
    };
    let enqueued: Enqueued = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let approver = {
        let (http, url, key, pool) = (
            fleet.http.clone(),
            fleet.gateway_url.clone(),
            fleet.keys.owner.clone(),
            fleet.pool.clone(),
        );
        let mut stopped = stopped;
        tokio::spawn(async move {
            let mut approved = 0;
            while !*stopped.borrow() {
                approved += traffic::approve_pass(&http, &url, &key, &pool).await.0;
                // An owner's pass every 2 s, ended at once when the run says stop.
                let _ = tokio::time::timeout(Duration::from_secs(2), stopped.changed()).await;
            }
            approved
        })
    };

    let share = messages / faults.len().max(1);
    let mut phases = Vec::new();
    let mut next = 0;
    let mut replies_taken = 0;
    for (i, &fault) in faults.iter().enumerate() {
        let count = if i + 1 == faults.len() {
            messages - next
        } else {
            share
        };
        let numbers: Vec<usize> = (next..next + count).collect();
        next += count;
        let before = enqueued.lock().expect("enqueued").len();
        let enqueue = {
            let (upstream, numbers, enqueued) =
                (upstream.clone(), numbers.clone(), enqueued.clone());
            tokio::spawn(async move {
                upstream
                    .enqueue(numbers, rate, Duration::from_secs(120), enqueued)
                    .await
            })
        };
        let third = comms_tests::eventually(Duration::from_secs(120), || async {
            enqueued.lock().expect("enqueued").len() >= before + count / 3
        })
        .await;
        assert!(
            third,
            "{}: a third of the phase was not enqueued",
            fault.name()
        );
        let texting = tokio::spawn(replies(
            fleet.sandbox.clone(),
            i,
            if fault == Fault::RepliesKill { 20 } else { 4 },
        ));
        println!(
            "[{:>5.1}s] {}: {}",
            started.elapsed().as_secs_f64(),
            fault.name(),
            fault.describe()
        );
        fault.inflict(&mut fleet).await;
        let lifted = Instant::now();
        let (resumed, recovered) =
            settle(&fleet, &keys(&enqueued, Some(lifted)), lifted, limit).await;
        let refused = enqueue.await.map(|r| r.len()).unwrap_or(count);
        replies_taken += texting.await.unwrap_or(0);
        let (_, phase_end) = settle(&fleet, &keys(&enqueued, None), Instant::now(), limit).await;
        println!(
            "[{:>5.1}s] {}: lifted; progress resumed after {}, all enqueued before the lift settled after {}{}",
            started.elapsed().as_secs_f64(),
            fault.name(),
            resumed.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64())),
            recovered.map_or("(not within the limit)".into(), |d| format!(
                "{:.1} s",
                d.as_secs_f64()
            )),
            if phase_end.is_some() {
                ""
            } else {
                "; the phase did not settle within the limit"
            },
        );
        phases.push(report::Phase {
            fault,
            numbers,
            refused,
            resumed,
            recovered,
            tally: ledger::Tally::default(),
        });
    }

    // The owner decides on what is left, then everything settles.
    let _ = comms_tests::eventually(Duration::from_secs(60), || async {
        traffic::approve_pass(
            &fleet.http,
            &fleet.gateway_url,
            &fleet.keys.owner,
            &fleet.pool,
        )
        .await
        .1 == 0
    })
    .await;
    let _ = stop.send(true);
    let approved = approver.await.unwrap_or(0);
    let all = keys(&enqueued, None);
    let (_, settled) = settle(&fleet, &all, Instant::now(), limit).await;
    println!(
        "[{:>5.1}s] final: {} (owner approvals: {approved})",
        started.elapsed().as_secs_f64(),
        if settled.is_some() {
            "every message settled"
        } else {
            "NOT every message settled"
        }
    );

    let rows = ledger::rows(&fleet.pool).await.expect("messages");
    let copies = ledger::provider_copies(&fleet.sandbox)
        .await
        .expect("sandbox record");
    let confirmed: std::collections::HashSet<usize> = enqueued
        .lock()
        .expect("enqueued")
        .iter()
        .map(|(n, _)| *n)
        .collect();
    for phase in &mut phases {
        let mine: Vec<usize> = phase
            .numbers
            .iter()
            .copied()
            .filter(|n| confirmed.contains(n))
            .collect();
        phase.tally = ledger::tally(&mine, &rows, &copies, &traffic::is_approved);
    }
    let mut everything: Vec<usize> = confirmed.iter().copied().collect();
    everything.sort_unstable();
    let total = ledger::tally(&everything, &rows, &copies, &traffic::is_approved);
    let recorded_replies: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM internal.inbound_messages WHERE body LIKE 'chaos reply %'",
    )
    .fetch_one(&fleet.pool)
    .await
    .unwrap_or(-1);
    let crashed = fleet.crashed();
    let secrets = privacy::Secrets {
        phones: (0..traffic::PEOPLE).map(traffic::phone).collect(),
        emails: (0..traffic::PEOPLE).map(traffic::email).collect(),
        tokens: vec![
            fleet.keys.enqueue.clone(),
            fleet.keys.owner.clone(),
            fleet.keys.oncall.clone(),
            fleet.twilio_token.clone(),
        ],
    };
    fleet.stop();
    let mut files = fleet.worker_logs();
    files.extend(traces.as_ref().map(|t| t.path.clone()));
    let spans = traces.as_ref().map(traces::Traces::spans);
    let (hits, bytes) = privacy::scan(&files, &secrets);
    let found = report::Findings {
        total,
        replies: (replies_taken, recorded_replies),
        hits,
        scanned: (files.len(), bytes),
        spans,
        crashed,
        took: started.elapsed(),
    };
    let text = report::render(&phases, &found);
    println!("{text}");
    if let Ok(path) = std::env::var("CHAOS_REPORT") {
        let _ = std::fs::write(&path, &text);
    }
    let passed = found.total.clean()
        && found.hits.is_empty()
        && found.crashed.is_empty()
        && found.spans != Some(0)
        && recorded_replies >= replies_taken as i64
        && settled.is_some();
    if passed && std::env::var("CHAOS_KEEP").map_or(true, |v| v != "1") {
        drop(fleet);
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("the run's folder (logs) is kept: {}", dir.display());
    }
    assert!(passed, "the chaos run failed: see the report above");
}
