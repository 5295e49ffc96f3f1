//! The runtime handing a grouping handler its deliveries in groups: every delivery still gets
//! its own outcome, and a group handler that panics does not take its neighbours with it.

use std::sync::{Arc, Mutex};

use comms_runtime::amqp::header_str;
use comms_runtime::runtime::{Handler, Incoming, Outcome, REASON_HEADER, Runtime, run_consumer};
use comms_runtime::shutdown::Shutdown;
use comms_tests::eventually;

use super::{Ledger, WAIT, env_with_ledger, ledger_rows, publish_job};

/// Decides groups by deciding each of its jobs with [`Ledger`]; panics on any group that holds
/// a job asking to panic.
struct GroupedLedger {
    each: Ledger,
    group_sizes: Mutex<Vec<usize>>,
}

impl Handler for GroupedLedger {
    async fn handle(&self, message: &Incoming) -> Outcome {
        self.each.handle(message).await
    }

    fn handles_groups(&self) -> bool {
        true
    }

    async fn handle_group(&self, messages: &[Incoming]) -> Vec<Outcome> {
        self.group_sizes.lock().expect("sizes").push(messages.len());
        if messages
            .iter()
            .any(|m| String::from_utf8_lossy(&m.body).contains("\"panic\":true"))
        {
            panic!("a group with a poison job");
        }
        let mut outcomes = Vec::new();
        for message in messages {
            outcomes.push(self.each.handle(message).await);
        }
        outcomes
    }
}

#[tokio::test]
async fn a_panicking_group_is_decided_again_one_by_one() {
    let env = env_with_ledger(&[
        ("COMMS__CONSUMER__GROUP_MAX", "16"),
        ("COMMS__CONSUMER__PREFETCH", "64"),
        ("COMMS__CONSUMER__CONCURRENCY", "32"),
    ])
    .await;
    for i in 0..40 {
        if i == 20 {
            publish_job(&env, r#"{"key":"boom","panic":true}"#).await;
        }
        publish_job(&env, &format!(r#"{{"key":"job-{i}"}}"#)).await;
    }
    publish_job(&env, "not json").await;
    let handler = Arc::new(GroupedLedger {
        each: Ledger::new(&env.pool),
        group_sizes: Mutex::new(Vec::new()),
    });
    let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(run_consumer(
        runtime,
        env.topology.send_queue("sms"),
        handler.clone(),
        shutdown.clone(),
    ));

    let dead = env.topology.dead_queue();
    assert!(
        eventually(WAIT, || async { ledger_rows(&env).await == 40 }).await,
        "every good job is recorded, the poison job's neighbours included"
    );
    assert!(eventually(WAIT, || async { env.depth(&dead).await == 2 }).await);
    shutdown.cancel();
    task.await.expect("consumer task");

    let reasons: Vec<String> = env
        .drain(&dead)
        .await
        .iter()
        .map(|(_, headers)| header_str(headers, REASON_HEADER).expect("reason"))
        .collect();
    for expected in ["handler panicked: job boom", "not the expected JSON"] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{expected}: {reasons:?}"
        );
    }
    let sizes = handler.group_sizes.lock().expect("sizes").clone();
    assert!(!sizes.is_empty(), "deliveries went through handle_group");
    assert!(
        sizes.iter().all(|size| (1..=16).contains(size)),
        "{sizes:?}"
    );
    assert_eq!(
        sizes.iter().sum::<usize>(),
        42,
        "each delivery in exactly one group"
    );
    env.teardown().await;
}
