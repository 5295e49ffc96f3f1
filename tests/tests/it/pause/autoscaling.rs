//! What KEDA sees while the fleet is paused: the held backlog lives in PostgreSQL, not in the
//! queues the ScaledObjects watch, so a long pause never scales the senders to their maximum
//! (deploy/kubernetes/base/keda-auth.yaml, docs/operations.md).

use comms_domain::pause::Scope;
use comms_tests::eventually;

use super::{WAIT, count_state, fleet, note};

#[tokio::test]
async fn a_paused_fleet_keeps_its_backlog_out_of_the_queue_keda_scales_on() {
    const BACKLOG: i64 = 300;
    let fleet = fleet(&[]).await;
    fleet.pause(Scope::Global, None).await;
    for i in 0..BACKLOG {
        fleet
            .send(&note(
                &format!("backlog-{i}"),
                "+14155550777",
                fleet.client_id,
            ))
            .await;
    }
    let all_held = eventually(WAIT, || async {
        count_state(&fleet, "held").await == BACKLOG
    })
    .await;
    assert!(all_held, "every message of the backlog is held");
    let queue = fleet.env.topology.send_queue("sms").name;
    assert_eq!(
        fleet.env.depth(&queue).await,
        0,
        "the queue KEDA reads is empty while {BACKLOG} messages wait for the resume"
    );
    fleet.stop().await;
}
