//! `commsctl contacts forget`: every trace of an address is gone, the opt-out still holds, the
//! event log is untouched and still append-only, and the audit says who, when and why — not whom.

use clap::Parser;
use std::time::Duration;

use comms_tests::eventually;
use comms_tests::fleet::{SendFleet, sms_request};
use serde_json::json;
use uuid::Uuid;

use super::{dead_letters_holding, tables_holding};

const OPTED_OUT: &str = "+14155550177";
const STILL_OK: &str = "+14155550188";
const NAME: &str = "Zebulon";

async fn forget(fleet: &SendFleet, phone: &str) {
    let cli = commsctl::Cli::parse_from([
        "commsctl",
        "contacts",
        "forget",
        "--phone",
        phone,
        "--reason",
        "erasure request #481",
        "--by",
        "maria",
    ]);
    commsctl::run_with(cli, &fleet.env.settings)
        .await
        .expect("forget");
}

fn request(key: &str, phone: &str, fleet: &SendFleet) -> serde_json::Value {
    let mut request = sms_request(key, phone, fleet.client_id);
    request["recipient"]["name"] = json!(NAME);
    request["template"]["vars"]["name"] = json!(NAME);
    request
}

/// What the workers keep around a message: a raw callback, a reply, a portal view, and a request
/// the sender refused (through the real runtime, into `internal.rejected_input`).
async fn leave_traces(fleet: &SendFleet, key: &str, phone: &str) -> (Uuid, Uuid) {
    let pool = &fleet.env.pool;
    let (message, contact): (Uuid, Uuid) =
        sqlx::query_as("SELECT id, contact_id FROM comms.messages WHERE idempotency_key = $1")
            .bind(key)
            .fetch_one(pool)
            .await
            .expect("message");
    let form = format!(
        "MessageSid=SM1&To={}&MessageStatus=delivered",
        phone.replace('+', "%2B")
    );
    sqlx::query(
        "INSERT INTO internal.provider_payloads (provider, kind, message_id, provider_message_id, payload)
         VALUES ('twilio', 'status', $1, 'SM1', $2)",
    )
    .bind(message)
    .bind(form.as_bytes())
    .execute(pool)
    .await
    .expect("payload");
    sqlx::query(
        "INSERT INTO internal.inbound_messages (provider, channel, provider_message_id, from_address,
             to_address, body, classification, message_id, contact_id)
         VALUES ('twilio', 'sms', $1, $2, '+15005550006', $3, 'reply', $4, $5)",
    )
    .bind(format!("SMin-{key}"))
    .bind(phone)
    .bind(format!("Thanks, {NAME} here"))
    .bind(message)
    .bind(contact)
    .execute(pool)
    .await
    .expect("inbound");
    sqlx::query(
        "INSERT INTO comms.portal_updates (message_id, contact_id, kind, body)
         VALUES ($1, $2, 'portal_update', $3)",
    )
    .bind(message)
    .bind(contact)
    .bind(format!("Update for {NAME}"))
    .execute(pool)
    .await
    .expect("portal update");
    let bad = json!({ "idempotency_key": format!("{key}-bad"), "recipient": { "phone": phone, "name": NAME } });
    fleet
        .send_raw("send.sms", &serde_json::to_vec(&bad).expect("json"))
        .await;
    (message, contact)
}

#[tokio::test]
async fn forgetting_a_person_removes_every_trace_keeps_the_opt_out_and_the_event_log() {
    let fleet = SendFleet::start(&[]).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}, welcome aboard!")
        .await;
    let pool = &fleet.env.pool;
    fleet.send(&request("dana-1", OPTED_OUT, &fleet)).await;
    fleet.send(&request("lee-1", STILL_OK, &fleet)).await;
    assert!(fleet.reaches("dana-1", "sent").await);
    assert!(fleet.reaches("lee-1", "sent").await);
    let (_, dana) = leave_traces(&fleet, "dana-1", OPTED_OUT).await;
    leave_traces(&fleet, "lee-1", STILL_OK).await;
    let rejected = eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM internal.rejected_input")
            .fetch_one(pool)
            .await
            .expect("count");
        n == 2
    })
    .await;
    assert!(rejected, "both bad requests were kept as rejected input");
    // A dead letter the broker made itself (a request for Dana that reached its queue's delivery
    // limit): it is only in comms.dead, with no row, until something collects it.
    let crashed = serde_json::to_vec(&request("dana-crash", OPTED_OUT, &fleet)).expect("json");
    fleet.env.publish_broker_dead_letter(&crashed).await;
    let dead_queue = fleet.env.topology.dead_queue();
    let waiting = eventually(Duration::from_secs(30), || async {
        fleet.env.depth(&dead_queue).await == 3
    })
    .await;
    assert!(
        waiting,
        "two runtime copies and the broker's dead letter wait in comms.dead"
    );
    assert_eq!(dead_letters_holding(&fleet.env, OPTED_OUT).await, 2);
    // Dana answered STOP: the opt-out must outlive the erasure.
    sqlx::query(
        "UPDATE comms.contact_channels SET consent_state = 'opted_out' WHERE contact_id = $1",
    )
    .bind(dana)
    .execute(pool)
    .await
    .expect("opt out");
    assert!(!tables_holding(pool, OPTED_OUT).await.is_empty());
    let events_before: Vec<String> =
        sqlx::query_scalar("SELECT e::text FROM comms.message_events e ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("events");

    forget(&fleet, OPTED_OUT).await;
    forget(&fleet, STILL_OK).await;

    // No table or view the fleet keeps, and no dead letter waiting in comms.dead, holds either
    // address (raw, or form-encoded) or the name.
    for needle in [
        OPTED_OUT,
        STILL_OK,
        &OPTED_OUT.replace('+', "%2B"),
        &STILL_OK.replace('+', "%2B"),
        NAME,
    ] {
        assert_eq!(tables_holding(pool, needle).await, [], "{needle} is gone");
        assert_eq!(
            dead_letters_holding(&fleet.env, needle).await,
            0,
            "no dead letter holds {needle}"
        );
    }
    // The event log was appended to at most, never changed, and still refuses changes.
    let events_after: Vec<String> =
        sqlx::query_scalar("SELECT e::text FROM comms.message_events e ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("events");
    assert_eq!(events_after[..events_before.len()], events_before[..]);
    for change in [
        "UPDATE comms.message_events SET reason = 'x'",
        "DELETE FROM comms.message_events",
        "TRUNCATE comms.message_events",
    ] {
        let refused = sqlx::query(change).execute(pool).await.expect_err(change);
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }
    // Messages keep their state, owner and source.
    let (state, owner, address): (String, String, String) = sqlx::query_as(
        "SELECT delivery_state, owner, recipient_address FROM comms.messages WHERE idempotency_key = 'dana-1'",
    )
    .fetch_one(pool)
    .await
    .expect("message");
    assert_eq!(
        (state.as_str(), owner.as_str(), address.as_str()),
        ("sent", "ana", "removed")
    );
    // The audit: who, when, why — and nothing that names the person.
    let audit: Vec<(String, String, String)> =
        sqlx::query_as("SELECT erased_by, reason, e::text FROM comms.erasures e ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("audit");
    assert_eq!(audit.len(), 2);
    assert_eq!(
        (audit[0].0.as_str(), audit[0].1.as_str()),
        ("maria", "erasure request #481")
    );
    assert!(!audit[0].2.contains(&dana.to_string()));
    let collected: Vec<i64> = sqlx::query_scalar(
        "SELECT (counts ->> 'dead_letters_collected')::int8 FROM comms.erasures ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("collected");
    assert_eq!(collected, [3, 0], "the first erasure emptied comms.dead");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM comms.erased_suppressions")
        .fetch_one(pool)
        .await
        .expect("suppressions");
    assert_eq!(
        kept, 1,
        "only the opted-out address leaves a (hashed) suppression"
    );

    // A new send: refused to the address that had opted out, allowed to the other.
    fleet.send(&request("dana-2", OPTED_OUT, &fleet)).await;
    fleet.send(&request("lee-2", STILL_OK, &fleet)).await;
    assert!(fleet.reaches("lee-2", "sent").await);
    assert!(fleet.reaches("dana-2", "blocked").await);
    assert_eq!(
        fleet.failure("dana-2").await.0.as_deref(),
        Some("opted_out")
    );
    let to: Vec<String> = fleet
        .sandbox()
        .messages()
        .await
        .expect("sandbox")
        .into_iter()
        .map(|m| m.to)
        .collect();
    assert_eq!(
        to.iter().filter(|t| *t == OPTED_OUT).count(),
        1,
        "only before the erasure"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn forgetting_cancels_what_still_waits_and_an_unknown_contact_is_refused() {
    let fleet = SendFleet::start(&[]).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}, welcome aboard!")
        .await;
    let pool = &fleet.env.pool;
    let mut later = request("later-1", OPTED_OUT, &fleet);
    later["send_after"] = json!("2099-01-01T00:00:00Z");
    fleet.send(&later).await;
    assert!(fleet.reaches("later-1", "deferred").await);
    let contact: Uuid = sqlx::query_scalar(
        "SELECT contact_id FROM comms.messages WHERE idempotency_key = 'later-1'",
    )
    .fetch_one(pool)
    .await
    .expect("contact");
    // An owner's open task about the waiting message (an approval, say) has nothing left to act
    // on once the message is cancelled: it is closed with it.
    let task: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.tasks (owner, title, next_action, message_id)
         SELECT 'ana', 'Message waits for your approval', 'approve or reject', id
         FROM comms.messages WHERE idempotency_key = 'later-1' RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("task");
    let cli = commsctl::Cli::parse_from([
        "commsctl",
        "contacts",
        "forget",
        "--contact",
        &contact.to_string(),
        "--reason",
        "gdpr",
        "--by",
        "maria",
    ]);
    commsctl::run_with(cli, &fleet.env.settings)
        .await
        .expect("forget");
    assert_eq!(fleet.state("later-1").await.as_deref(), Some("cancelled"));
    let task_state: String = sqlx::query_scalar("SELECT state FROM comms.tasks WHERE id = $1")
        .bind(task)
        .fetch_one(pool)
        .await
        .expect("task state");
    assert_eq!(task_state, "cancelled");
    assert_eq!(
        fleet.timeline("later-1").await.last().map(String::as_str),
        Some("cancelled")
    );
    assert_eq!(tables_holding(pool, OPTED_OUT).await, []);

    let unknown = Uuid::new_v4().to_string();
    let cli = commsctl::Cli::parse_from([
        "commsctl",
        "contacts",
        "forget",
        "--contact",
        &unknown,
        "--reason",
        "gdpr",
        "--by",
        "maria",
    ]);
    let refused = commsctl::run_with(cli, &fleet.env.settings)
        .await
        .expect_err("unknown");
    assert!(refused.to_string().contains("no contact"), "{refused}");

    // An address that is not one (a typo, a fragment) is refused before anything is looked for:
    // raw material that merely contains the text is left alone and no erasure is recorded.
    sqlx::query(
        "INSERT INTO internal.provider_payloads (provider, kind, provider_message_id, payload)
         VALUES ('twilio', 'status', 'SM-other',
                 convert_to('To=%2B14155550188&From=a%40example.com', 'UTF8'))",
    )
    .execute(pool)
    .await
    .expect("a stranger's payload");
    for (flag, typo) in [("--phone", "4155550188"), ("--email", "example.com")] {
        let cli = commsctl::Cli::parse_from([
            "commsctl", "contacts", "forget", flag, typo, "--reason", "gdpr", "--by", "maria",
        ]);
        let refused = commsctl::run_with(cli, &fleet.env.settings)
            .await
            .expect_err("not an address");
        let field = flag.trim_start_matches('-');
        assert!(
            refused.to_string().contains(&format!("{field}: expected")),
            "{refused}"
        );
    }
    let (payloads, erasures): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM internal.provider_payloads WHERE provider_message_id = 'SM-other'),
                (SELECT count(*) FROM comms.erasures)",
    )
    .fetch_one(pool)
    .await
    .expect("counts");
    assert_eq!((payloads, erasures), (1, 1), "only the contact's erasure");
    let no_reason = commsctl::Cli::try_parse_from([
        "commsctl", "contacts", "forget", "--phone", OPTED_OUT, "--by", "maria",
    ]);
    assert!(no_reason.is_err(), "--reason is required");
    fleet.stop().await;
}
