//! A pause's backlog larger than one release batch (1 000 messages) is released in full: batch
//! after batch (each starting after the last message the run released), every message sent
//! once, in creation order per recipient. Long, so outside the default run:
//! `cargo test --test it -- --ignored release_batches`.

use std::time::Duration;

use comms_domain::pause::Scope;

const WAIT: Duration = Duration::from_secs(180);

async fn reaches(fleet: &comms_tests::fleet::SendFleet, sql: &str, expected: i64) -> bool {
    comms_tests::eventually(WAIT, || async {
        super::count(fleet, sql).await == expected
    })
    .await
}

#[tokio::test]
#[ignore = "long (1 250 messages, about 2 minutes; it starves the suite's 30 s waits): cargo test --test it -- --ignored release_batches"]
async fn a_backlog_of_more_than_one_release_batch_goes_out_in_full_once_each_in_order() {
    let mut fleet = super::fleet().await;
    super::pause_before_start(&fleet, Scope::Global).await;
    // 1 250 held over the 20 known recipients: two release batches, about 62 per recipient.
    const HELD: i64 = 1_250;
    super::queue(&fleet, "backlog", HELD as usize).await;
    fleet.start_sender();
    let held = "SELECT count(*) FROM comms.messages WHERE delivery_state = 'held'";
    assert!(reaches(&fleet, held, HELD).await, "every message is held");

    fleet.resume(Scope::Global).await;
    let sent = "SELECT count(*) FROM comms.messages WHERE delivery_state = 'sent'";
    assert!(
        reaches(&fleet, sent, HELD).await,
        "every held message is sent after the resume, past the first batch of 1 000"
    );
    let dispatches = "SELECT count(*) FROM comms.message_events WHERE event_type = 'dispatching'";
    assert_eq!(
        super::count(&fleet, dispatches).await,
        HELD,
        "each sent once"
    );
    assert_eq!(
        fleet.sandbox().messages().await.expect("sandbox").len(),
        HELD as usize
    );
    let out_of_order = "SELECT count(*) FROM comms.messages a JOIN comms.messages b
         ON a.contact_id = b.contact_id AND a.channel = b.channel
         WHERE (a.created_at, a.id) < (b.created_at, b.id) AND a.dispatched_at > b.dispatched_at";
    assert_eq!(
        super::count(&fleet, out_of_order).await,
        0,
        "a recipient's messages went out in the order they were created"
    );
    fleet.stop().await;
}
