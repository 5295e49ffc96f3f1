//! Dead letters an operator can act on, driven through `commsctl dead` as on-call would: a bad
//! send request is listed with its reason and never a full address, a dry run changes nothing, a
//! fixed message replayed goes out once, a copy of an already-sent one sends nothing more, a
//! purge deletes the payload, every replay and purge leaves an audit row, and the broker's own
//! dead letters in `comms.dead` are collected into the same listing. [`api`]: the admin API.

mod api;

use std::time::Duration;

use comms_domain::dead::{self, Filter};
use comms_tests::eventually;
use comms_tests::fleet::{SendFleet, sms_request};
use serde_json::json;
use uuid::Uuid;

use crate::approvals::ctl;

const WAIT: Duration = Duration::from_secs(30);
/// Personal data the dead letters carry; no listing may show it whole.
const PERSONAL: [&str; 4] = ["4155552671", "555-2671", "dana.smith", "acme-dental"];

/// The fleet with its `welcome` template, and two refused requests: one to a contact that does
/// not exist yet (fixable), one without an owner that carries a phone number and an email address.
pub(crate) async fn fleet_with_dead_letters() -> (SendFleet, Uuid) {
    let fleet = SendFleet::start(&[]).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}!")
        .await;
    let contact = Uuid::new_v4();
    let mut fixable = sms_request("dead-fix", "+14155550101", fleet.client_id);
    fixable["recipient"] = json!({ "contact_id": contact });
    fleet.send(&fixable).await;
    let mut broken = sms_request("dead-broken", "+1 (415) 555-2671", fleet.client_id);
    broken["template"]["vars"]["email"] = json!("dana.smith@acme-dental.example");
    broken.as_object_mut().map(|o| o.remove("owner"));
    fleet.send(&broken).await;
    let pool = &fleet.env.pool;
    let refused = eventually(WAIT, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM internal.rejected_input")
            .fetch_one(pool)
            .await
            .expect("count");
        n == 2
    })
    .await;
    assert!(refused, "both requests are refused and kept");
    (fleet, contact)
}

/// Fixes the first refused request: its contact now exists, with an SMS address.
pub(crate) async fn fix_contact(fleet: &SendFleet, contact: Uuid) {
    let pool = &fleet.env.pool;
    sqlx::query("INSERT INTO comms.contacts (id, name) VALUES ($1, 'Dana')")
        .bind(contact)
        .execute(pool)
        .await
        .expect("contact");
    sqlx::query(
        "INSERT INTO comms.contact_channels (contact_id, channel, address, consent_state)
         VALUES ($1, 'sms', '+14155550101', 'express')",
    )
    .bind(contact)
    .execute(pool)
    .await
    .expect("address");
}

pub(crate) fn assert_masked(text: &str) {
    for personal in PERSONAL {
        assert!(
            !text.contains(personal),
            "{personal} is shown whole: {text}"
        );
    }
}

async fn state_of(fleet: &SendFleet, id: i64) -> (String, Option<i64>, i32) {
    sqlx::query_as(
        "SELECT state, action_id, octet_length(payload) FROM internal.rejected_input WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&fleet.env.pool)
    .await
    .expect("dead letter")
}

async fn actions(fleet: &SendFleet) -> Vec<(i64, String, String, String, i32, i32)> {
    sqlx::query_as(
        "SELECT id, action, actor, reason, matched, done FROM internal.dead_letter_actions
         WHERE finished_at IS NOT NULL ORDER BY id",
    )
    .fetch_all(&fleet.env.pool)
    .await
    .expect("audit")
}

#[tokio::test]
async fn dead_letters_are_listed_masked_replayed_once_when_fixed_and_purged_with_an_audit() {
    let (fleet, contact) = fleet_with_dead_letters().await;
    let pool = &fleet.env.pool;
    let namespace = fleet.env.topology.namespace().to_string();
    let sms_queue = fleet.env.topology.send_queue("sms").name;

    // Listed with its reason and origin queue, and nothing personal in full.
    for args in [
        &["dead", "list"][..],
        &[
            "--json",
            "dead",
            "list",
            "--queue",
            "comms.send.sms",
            "--since",
            "1h",
        ],
    ] {
        ctl(&fleet, args).await.expect("dead list");
    }
    let letters = dead::list(pool, &namespace, &Filter::default(), 50)
        .await
        .expect("list");
    assert_eq!(letters.len(), 2, "{letters:?}");
    let fix = letters
        .iter()
        .find(|l| l.reason.contains("recipient.contact_id"))
        .expect("the unknown contact is listed with its reason");
    let broken = letters
        .iter()
        .find(|l| l.id != fix.id)
        .expect("the other one");
    assert!(broken.reason.contains("owner"), "{}", broken.reason);
    for letter in &letters {
        assert_eq!(letter.queue, sms_queue);
        assert_eq!(
            (letter.state.as_str(), letter.origin.as_str()),
            ("dead", "runtime")
        );
    }
    assert!(broken.preview.contains("dead-broken"), "{}", broken.preview);
    assert_masked(&serde_json::to_string(&letters).expect("json"));
    let detail = dead::show(pool, broken.id)
        .await
        .expect("show")
        .expect("found");
    assert_masked(&serde_json::to_string(&detail).expect("json"));
    ctl(&fleet, &["dead", "show", &broken.id.to_string()])
        .await
        .expect("dead show");

    // A dry run changes nothing.
    ctl(
        &fleet,
        &[
            "dead",
            "replay",
            "--reason-contains",
            "contact_id",
            "--dry-run",
            "--reason",
            "try",
        ],
    )
    .await
    .expect("dry run");
    assert_eq!(state_of(&fleet, fix.id).await.0, "dead");
    assert!(
        actions(&fleet).await.is_empty(),
        "a dry run writes no audit row"
    );
    assert_eq!(fleet.state("dead-fix").await, None, "nothing was sent");

    // A reason is required.
    let unexplained = ctl(
        &fleet,
        &[
            "dead",
            "replay",
            "--id",
            &fix.id.to_string(),
            "--reason",
            " ",
        ],
    )
    .await;
    assert!(unexplained.is_err(), "a replay needs a reason");

    // Fixed (the contact now exists), replayed: it goes out once, through the sender.
    fix_contact(&fleet, contact).await;
    let replay = [
        "dead",
        "replay",
        "--reason-contains",
        "contact_id",
        "--rate",
        "20/s",
        "--reason",
        "contact created",
        "--actor",
        "ana",
    ];
    ctl(&fleet, &replay).await.expect("replay");
    assert!(
        fleet.reaches("dead-fix", "sent").await,
        "the fixed message is sent"
    );
    let audit = actions(&fleet).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    let (replay_id, action, actor, reason, matched, done) = audit[0].clone();
    assert_eq!(
        (
            action.as_str(),
            actor.as_str(),
            reason.as_str(),
            matched,
            done
        ),
        ("replay", "ana", "contact created", 1, 1)
    );
    assert_eq!(state_of(&fleet, fix.id).await.0, "replayed");
    assert_eq!(state_of(&fleet, fix.id).await.1, Some(replay_id));
    // The same replay again finds nothing left to replay.
    ctl(&fleet, &replay).await.expect("replay again");
    assert_eq!(
        actions(&fleet).await.len(),
        1,
        "nothing matched, nothing audited"
    );

    // A copy of the now-sent request, dead again: replayed, the sender sends nothing more.
    let copy: i64 = sqlx::query_scalar(
        "INSERT INTO internal.rejected_input (queue, routing_key, reason, payload)
         SELECT queue, routing_key, 'test: a second copy', payload FROM internal.rejected_input
         WHERE id = $1 RETURNING id",
    )
    .bind(fix.id)
    .fetch_one(pool)
    .await
    .expect("copy");
    let handled = || {
        comms_runtime::metrics::consumer()
            .handled
            .with_label_values(&[sms_queue.as_str(), "ack"])
            .get()
    };
    let before = handled();
    ctl(
        &fleet,
        &[
            "dead",
            "replay",
            "--id",
            &copy.to_string(),
            "--reason",
            "copy",
        ],
    )
    .await
    .expect("replay the copy");
    let consumed = eventually(WAIT, || async { handled() > before }).await;
    assert!(consumed, "the sender took the replayed copy");
    let sent = fleet
        .sandbox()
        .messages_to("+14155550101")
        .await
        .expect("sandbox");
    assert_eq!(sent.len(), 1, "sent once, not again: {sent:?}");

    // Purged: the payload is gone, the row and the audit stay.
    ctl(
        &fleet,
        &[
            "dead",
            "purge",
            "--id",
            &broken.id.to_string(),
            "--reason",
            "producer fixed",
        ],
    )
    .await
    .expect("purge");
    let (state, action_id, size) = state_of(&fleet, broken.id).await;
    assert_eq!((state.as_str(), size), ("purged", 0));
    let audit = actions(&fleet).await;
    let purge = audit.last().expect("purge audited");
    assert_eq!(Some(purge.0), action_id);
    assert_eq!(
        (purge.1.as_str(), purge.3.as_str(), purge.5),
        ("purge", "producer fixed", 1)
    );
    let listed = dead::list(pool, &namespace, &Filter::default(), 50)
        .await
        .expect("list");
    assert!(listed.is_empty(), "nothing dead is left: {listed:?}");
    fleet.stop().await;
}

#[tokio::test]
async fn the_brokers_dead_letters_are_collected_into_the_listing_once() {
    let (fleet, _) = fleet_with_dead_letters().await;
    let topology = &fleet.env.topology;
    let sms_queue = topology.send_queue("sms").name;
    // What the broker does when a message reaches its queue's delivery limit.
    let body = serde_json::to_vec(&sms_request("crash-loop", "+14155550199", fleet.client_id))
        .expect("json");
    fleet.env.publish_broker_dead_letter(&body).await;
    let dead_queue = topology.dead_queue();
    assert!(
        eventually(WAIT, || async { fleet.env.depth(&dead_queue).await == 3 }).await,
        "the two runtime copies and the broker's dead letter wait in comms.dead"
    );
    for _ in 0..2 {
        ctl(&fleet, &["dead", "list"]).await.expect("dead list");
    }
    assert_eq!(
        fleet.env.depth(&dead_queue).await,
        0,
        "comms.dead is collected"
    );
    let letters = dead::list(
        &fleet.env.pool,
        topology.namespace(),
        &Filter::default(),
        50,
    )
    .await
    .expect("list");
    assert_eq!(
        letters.len(),
        3,
        "no runtime dead letter twice: {letters:?}"
    );
    let broker = letters
        .iter()
        .find(|l| l.origin == "broker")
        .expect("the broker's dead letter is listed");
    assert_eq!(broker.queue, sms_queue);
    assert!(
        broker.reason.contains("delivery_limit"),
        "{}",
        broker.reason
    );
    fleet.stop().await;
}
