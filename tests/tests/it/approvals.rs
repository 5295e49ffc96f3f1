//! The approval workflow end to end, driven through `commsctl` as an owner would: kinds that need
//! an approval never leave without one (whatever redeliveries or restarts happen), approve and
//! reject record who, when and how long it took, and only the owner or a named delegate decides.
//! [`later`]: expiry, content changes and AI drafts; [`api`]: the gateway's admin API.

mod api;
mod later;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use comms_domain::approvals::{self, Gate};
use comms_domain::pause::switch::PauseSwitch;
use comms_runtime::clock::SystemClock;
use comms_runtime::runtime::Runtime;
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;
use comms_tests::fleet::{SendFleet, sms_request};
use comms_tests::{TestEnv, eventually};
use serde_json::json;

/// Runs `commsctl <args>` against the fleet's database and broker.
pub async fn ctl_with(settings: &Settings, args: &[&str]) -> anyhow::Result<()> {
    let argv = std::iter::once("commsctl").chain(args.iter().copied());
    commsctl::run_with(commsctl::Cli::try_parse_from(argv)?, settings).await
}

pub async fn ctl(fleet: &SendFleet, args: &[&str]) -> anyhow::Result<()> {
    ctl_with(&fleet.env.settings, args).await
}

fn request(key: &str, kind: &str, fleet: &SendFleet) -> serde_json::Value {
    let mut request = sms_request(key, "+14155552671", fleet.client_id);
    request["kind"] = json!(kind);
    request
}

async fn fleet(overrides: &[(&str, &str)]) -> SendFleet {
    let fleet = SendFleet::start(overrides).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}!")
        .await;
    fleet
}

/// Every send queue is empty: whatever was published has been handled.
async fn drained(env: &TestEnv) {
    let queues: Vec<String> = ["sms", "email", "portal"]
        .iter()
        .map(|c| env.topology.send_queue(c).name)
        .collect();
    let empty = eventually(Duration::from_secs(20), || async {
        for queue in &queues {
            if env.depth(queue).await > 0 {
                return false;
            }
        }
        true
    })
    .await;
    assert!(empty, "the send queues drain");
}

async fn sent_count(fleet: &SendFleet) -> usize {
    fleet.sandbox().messages().await.expect("sandbox").len()
}

#[derive(Debug, sqlx::FromRow)]
struct Recorded {
    decision: String,
    decided_by: String,
    on_behalf_of: Option<String>,
    reason: Option<String>,
    requested_at: DateTime<Utc>,
    approval_seconds: Option<f64>,
    republished_at: Option<DateTime<Utc>>,
}

async fn decisions(fleet: &SendFleet, key: &str) -> Vec<Recorded> {
    sqlx::query_as(
        "SELECT a.decision, a.decided_by, a.on_behalf_of, a.reason, a.requested_at,
                a.approval_seconds, a.republished_at
         FROM comms.message_approvals a JOIN comms.messages m ON m.id = a.message_id
         WHERE m.idempotency_key = $1 ORDER BY a.decided_at",
    )
    .bind(key)
    .fetch_all(&fleet.env.pool)
    .await
    .expect("decisions")
}

async fn requested_at(fleet: &SendFleet, key: &str) -> DateTime<Utc> {
    sqlx::query_scalar(
        "SELECT e.occurred_at FROM comms.message_events e JOIN comms.messages m ON m.id = e.message_id
         WHERE m.idempotency_key = $1 AND e.event_type = 'approval_requested' ORDER BY e.id DESC LIMIT 1",
    )
    .bind(key)
    .fetch_one(&fleet.env.pool)
    .await
    .expect("approval_requested event")
}

fn start_sender(env: &TestEnv) -> (Shutdown, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let runtime = Runtime::new(env.settings.clone(), env.pool.clone());
    let switch = PauseSwitch::new(env.settings.pause.max_staleness);
    let shutdown = Shutdown::new();
    let task = tokio::spawn(comms_sender::run_with_switch(
        runtime,
        Arc::new(SystemClock),
        switch,
        shutdown.clone(),
    ));
    (shutdown, task)
}

#[tokio::test]
async fn kinds_that_need_approval_never_go_out_without_it_across_redeliveries_and_restarts() {
    let fleet = SendFleet::without_sender(&[]).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}!")
        .await;
    let mut requests = vec![
        request("w-incident", "incident_notice", &fleet),
        request("w-digest", "report_digest", &fleet),
        request("w-approval", "approval_request", &fleet),
        request("w-roi", "transactional", &fleet),
    ];
    requests[3]["contains_roi"] = json!(true);
    let (stop, sender) = start_sender(&fleet.env);
    for r in &requests {
        fleet.send(r).await;
    }
    for r in &requests {
        let key = r["idempotency_key"].as_str().expect("key");
        assert!(fleet.reaches(key, "awaiting_approval").await, "{key} waits");
    }
    // Redelivered while the sender runs, and again while it is down and after it restarts.
    for r in &requests {
        fleet.send(r).await;
    }
    drained(&fleet.env).await;
    stop.cancel();
    sender.await.expect("sender task").expect("sender stops");
    for r in &requests {
        fleet.send(r).await;
    }
    let (stop, sender) = start_sender(&fleet.env);
    drained(&fleet.env).await;

    assert_eq!(sent_count(&fleet).await, 0, "nothing reached the provider");
    for r in &requests {
        let key = r["idempotency_key"].as_str().expect("key");
        assert_eq!(fleet.state(key).await.as_deref(), Some("awaiting_approval"));
        assert_eq!(
            fleet.open_tasks(key).await,
            1,
            "{key}: one task, not one per delivery"
        );
        assert!(
            !fleet
                .timeline(key)
                .await
                .contains(&"dispatching".to_string())
        );
    }
    let waiting = approvals::waiting(&fleet.env.pool, Some("ana"))
        .await
        .expect("list");
    assert_eq!(waiting.len(), 4);
    assert!(
        waiting
            .iter()
            .all(|w| w.waits_for == Gate::Approval && w.preview == "Hi Dana!")
    );

    // Approved, the one message goes out, once.
    ctl(&fleet, &["approve", "w-incident", "--as", "ana"])
        .await
        .expect("approve");
    assert!(fleet.reaches("w-incident", "sent").await);
    fleet.send(&requests[0]).await;
    drained(&fleet.env).await;
    assert_eq!(sent_count(&fleet).await, 1);
    stop.cancel();
    sender.await.expect("sender task").expect("sender stops");
    fleet.stop().await;
}

#[tokio::test]
async fn an_approval_records_who_when_and_how_long_and_the_message_goes_out() {
    let fleet = fleet(&[]).await;
    fleet.send(&request("a-1", "incident_notice", &fleet)).await;
    assert!(fleet.reaches("a-1", "awaiting_approval").await);
    let asked = requested_at(&fleet, "a-1").await;

    ctl(&fleet, &["approve", "a-1", "--as", "ana"])
        .await
        .expect("approve");
    assert!(fleet.reaches("a-1", "sent").await);
    assert_eq!(sent_count(&fleet).await, 1);

    let recorded = decisions(&fleet, "a-1").await;
    assert_eq!(recorded.len(), 1);
    let approval = &recorded[0];
    assert_eq!(
        (approval.decision.as_str(), approval.decided_by.as_str()),
        ("approved", "ana")
    );
    assert_eq!(approval.on_behalf_of, None);
    assert_eq!(
        approval.requested_at, asked,
        "measured from the approval request"
    );
    assert!(approval.approval_seconds.is_some_and(|s| s >= 0.0));
    assert!(
        approval.republished_at.is_some(),
        "handed back to the sender, confirmed"
    );
    assert_eq!(
        fleet.open_tasks("a-1").await,
        0,
        "the approval task is closed"
    );
    let timeline = fleet.timeline("a-1").await;
    for event in ["approval_requested", "approved", "dispatching", "sent"] {
        assert!(
            timeline.contains(&event.to_string()),
            "{event} in {timeline:?}"
        );
    }
    assert!(
        comms_runtime::metrics::render()
            .contains("comms_approval_seconds_count{decision=\"approved\"}")
    );
    for args in [
        &["approvals"][..],
        &["approvals", "decided"],
        &["--json", "approvals", "decided"],
    ] {
        ctl(&fleet, args).await.expect("the listings work");
    }
    let history = approvals::decided(&fleet.env.pool, 10)
        .await
        .expect("history");
    assert_eq!(history[0].decided_by, "ana");
    // Nothing is left to decide on it.
    let again = ctl(&fleet, &["approve", "a-1", "--as", "ana"])
        .await
        .expect_err("not waiting");
    assert!(
        again.to_string().contains("not awaiting approval"),
        "{again}"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn only_the_owner_or_a_named_delegate_may_decide() {
    let fleet = fleet(&[]).await;
    fleet.send(&request("d-1", "report_digest", &fleet)).await;
    assert!(fleet.reaches("d-1", "awaiting_approval").await);

    let refused = ctl(&fleet, &["approve", "d-1", "--as", "bo"])
        .await
        .expect_err("bo is nobody");
    assert!(
        refused
            .to_string()
            .contains("bo may not decide on messages owned by ana"),
        "{refused}"
    );
    let refused = ctl(&fleet, &["reject", "d-1", "--reason", "no", "--as", "bo"]).await;
    assert!(refused.is_err());
    let named_by_other = ctl(
        &fleet,
        &[
            "approvals",
            "delegate",
            "--owner",
            "ana",
            "--to",
            "bo",
            "--as",
            "bo",
        ],
    )
    .await;
    assert!(
        named_by_other
            .expect_err("only ana names")
            .to_string()
            .contains("only ana may")
    );
    assert!(
        decisions(&fleet, "d-1").await.is_empty(),
        "a refused decision records nothing"
    );
    assert_eq!(
        fleet.state("d-1").await.as_deref(),
        Some("awaiting_approval")
    );

    ctl(
        &fleet,
        &[
            "approvals",
            "delegate",
            "--owner",
            "ana",
            "--to",
            "bo",
            "--as",
            "ana",
        ],
    )
    .await
    .expect("ana names bo");
    let for_bo = approvals::waiting(&fleet.env.pool, Some("bo"))
        .await
        .expect("list");
    assert_eq!(for_bo.len(), 1, "a delegate sees what they may decide on");
    ctl(&fleet, &["approve", "d-1", "--as", "bo"])
        .await
        .expect("bo approves for ana");
    assert!(fleet.reaches("d-1", "sent").await);
    let recorded = decisions(&fleet, "d-1").await;
    assert_eq!(recorded[0].decided_by, "bo");
    assert_eq!(recorded[0].on_behalf_of.as_deref(), Some("ana"));
    fleet.stop().await;
}

#[tokio::test]
async fn a_rejection_blocks_the_message_with_the_owners_reason() {
    let fleet = fleet(&[]).await;
    let notice = request("r-1", "incident_notice", &fleet);
    fleet.send(&notice).await;
    assert!(fleet.reaches("r-1", "awaiting_approval").await);
    assert!(
        ctl(&fleet, &["reject", "r-1", "--as", "ana"])
            .await
            .is_err(),
        "a reason is required"
    );
    let blank = ctl(&fleet, &["reject", "r-1", "--reason", "  ", "--as", "ana"]).await;
    assert!(blank.expect_err("blank").to_string().contains("reason"));

    ctl(
        &fleet,
        &["reject", "r-1", "--reason", "wrong incident", "--as", "ana"],
    )
    .await
    .expect("reject");
    assert_eq!(fleet.state("r-1").await.as_deref(), Some("blocked"));
    assert_eq!(
        fleet.failure("r-1").await.0.as_deref(),
        Some("approval_rejected")
    );
    assert_eq!(fleet.open_tasks("r-1").await, 0);
    let recorded = decisions(&fleet, "r-1").await;
    assert_eq!(recorded[0].decision, "rejected");
    assert_eq!(recorded[0].reason.as_deref(), Some("wrong incident"));
    assert!(
        fleet
            .timeline("r-1")
            .await
            .contains(&"rejected".to_string())
    );
    fleet.send(&notice).await;
    drained(&fleet.env).await;
    assert_eq!(fleet.state("r-1").await.as_deref(), Some("blocked"));
    assert_eq!(sent_count(&fleet).await, 0);
    fleet.stop().await;
}
