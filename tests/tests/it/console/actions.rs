//! What on-call and owners do from the pages, reaching the real pause switch, approvals, tasks and
//! timelines, with the sender running against the sandbox provider.

use std::time::Duration;

use comms_domain::api_keys::{self, Role};
use comms_domain::pause::Scope;
use comms_domain::pause::store;
use comms_tests::eventually;
use comms_tests::fleet::{SendFleet, sms_request};
use reqwest::StatusCode;
use serde_json::json;

use super::{Console, audited, sender_paused};

const PHONE: &str = "+14155552671";

async fn fleet() -> SendFleet {
    let fleet = SendFleet::start(&[]).await;
    fleet
        .approved_template("welcome", "sms", None, "Hi {{ name }}!")
        .await;
    fleet
}

pub(super) async fn signed_in(fleet: &SendFleet, name: &str, role: Role) -> Console {
    let key = api_keys::create(&fleet.env.pool, name, role)
        .await
        .expect("key");
    let mut console = Console::start(&fleet.env).await;
    let page = console.login(&key.key).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(console.csrf.is_some());
    console
}

async fn sent_count(fleet: &SendFleet) -> usize {
    fleet.sandbox().messages().await.expect("sandbox").len()
}

#[tokio::test]
async fn pausing_from_the_console_holds_and_resuming_sends_once() {
    let fleet = fleet().await;
    let console = signed_in(&fleet, "olu", Role::Oncall).await;
    let form = [
        ("scope", "global"),
        ("value", ""),
        ("reason", "provider incident"),
        ("for", ""),
    ];

    let confirm = console.post("/console/pause/confirm", &form).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("All automated sending stops"));
    assert!(
        confirm
            .body
            .contains("In flight now: 0 recorded message(s)")
    );
    assert!(
        store::active(&fleet.env.pool)
            .await
            .expect("switch")
            .is_empty(),
        "the confirmation step changes nothing"
    );
    let no_reason = console
        .post("/console/pause", &[("scope", "global"), ("reason", " ")])
        .await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(no_reason.body.contains("A reason is required"));

    let paused = console.post("/console/pause", &form).await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER);
    let on = store::active(&fleet.env.pool).await.expect("switch");
    assert_eq!(on.len(), 1);
    assert_eq!(on[0].scope, Scope::Global);
    assert_eq!(on[0].actor, "olu", "the key's name is who paused");
    assert!(
        sender_paused(&fleet).await,
        "the sender applied the console's pause"
    );

    fleet
        .send(&sms_request("held-1", PHONE, fleet.client_id))
        .await;
    assert!(fleet.reaches("held-1", "held").await);
    assert_eq!(sent_count(&fleet).await, 0);
    let page = console.get("/console/pause").await;
    assert!(page.body.contains("provider incident"));
    assert!(page.body.contains("<dd>1 message(s)</dd>"), "{}", page.body);
    assert!(
        page.body.contains(">held-1</a>"),
        "the held message is listed"
    );

    let resumed = console
        .post(
            "/console/resume",
            &[("scope", "global"), ("value", ""), ("reason", "recovered")],
        )
        .await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    assert!(fleet.reaches("held-1", "sent").await);
    let once = eventually(Duration::from_secs(5), || async {
        sent_count(&fleet).await == 1
    })
    .await;
    assert!(once);
    let progress = eventually(Duration::from_secs(10), || async {
        let page = console.get("/console/pause").await;
        page.body.contains("Resumed in the last hour")
            && page.body.contains("<td>olu</td><td>1</td><td>0</td>")
    })
    .await;
    assert!(progress, "the release progress shows the held message out");
    assert_eq!(sent_count(&fleet).await, 1, "sent once");
    assert_eq!(
        audited(&fleet.env, "/console/resume").await,
        vec![("olu".to_string(), true)]
    );
    console.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn owners_approve_and_reject_from_the_console() {
    let fleet = fleet().await;
    // The fleet's messages are owned by ana: her key's name makes her the decider.
    let console = signed_in(&fleet, "ana", Role::Owner).await;
    for (key, kind) in [("ok-1", "incident_notice"), ("no-1", "report_digest")] {
        let mut request = sms_request(key, PHONE, fleet.client_id);
        request["kind"] = json!(kind);
        fleet.send(&request).await;
        assert!(fleet.reaches(key, "awaiting_approval").await);
    }

    let page = console.get("/console/approvals").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("ok-1") && page.body.contains("no-1"));
    assert!(page.body.contains("Hi "), "the rendered content is shown");
    assert!(page.body.contains("+14•••71"), "the recipient is masked");
    assert!(!page.body.contains(PHONE), "never the full number");

    let id = |key: &'static str| {
        let pool = fleet.env.pool.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>(
                "SELECT id FROM comms.messages WHERE idempotency_key = $1",
            )
            .bind(key)
            .fetch_one(&pool)
            .await
            .expect("id")
        }
    };
    let ok = id("ok-1").await;
    let approved = console
        .post(&format!("/console/approvals/{ok}/approve"), &[])
        .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    assert!(fleet.reaches("ok-1", "sent").await, "approved goes out");

    let no = id("no-1").await;
    let no_reason = console
        .post(
            &format!("/console/approvals/{no}/reject"),
            &[("reason", "")],
        )
        .await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(no_reason.body.contains("Nothing changed"));
    let rejected = console
        .post(
            &format!("/console/approvals/{no}/reject"),
            &[("reason", "stale figures")],
        )
        .await;
    assert_eq!(rejected.status, StatusCode::SEE_OTHER);
    assert_eq!(fleet.state("no-1").await.as_deref(), Some("blocked"));
    let by: (String, Option<String>) = sqlx::query_as(
        "SELECT a.decided_by, a.reason FROM comms.message_approvals a
         WHERE a.message_id = $1",
    )
    .bind(no)
    .fetch_one(&fleet.env.pool)
    .await
    .expect("decision");
    assert_eq!(by, ("ana".to_string(), Some("stale figures".to_string())));
    assert_eq!(sent_count(&fleet).await, 1);

    // An AI draft is offered a review, not an approval; once reviewed it goes out.
    let mut draft = sms_request("ai-1", PHONE, fleet.client_id);
    draft["ai_draft"] = json!(true);
    fleet.send(&draft).await;
    assert!(fleet.reaches("ai-1", "awaiting_approval").await);
    let ai = id("ai-1").await;
    let page = console.get("/console/approvals").await;
    assert!(
        page.body
            .contains(&format!("/console/approvals/{ai}/review"))
    );
    assert!(
        !page
            .body
            .contains(&format!("/console/approvals/{ai}/approve"))
    );
    let reviewed = console
        .post(&format!("/console/approvals/{ai}/review"), &[])
        .await;
    assert_eq!(reviewed.status, StatusCode::SEE_OTHER, "{}", reviewed.body);
    assert!(fleet.reaches("ai-1", "sent").await, "reviewed goes out");
    assert_eq!(sent_count(&fleet).await, 2);
    console.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn tasks_close_and_messages_show_their_timeline() {
    let fleet = fleet().await;
    let console = signed_in(&fleet, "olu", Role::Oncall).await;
    fleet
        .send(&sms_request("find-me", PHONE, fleet.client_id))
        .await;
    assert!(fleet.reaches("find-me", "sent").await);
    let task: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO comms.tasks (owner, title, next_action) VALUES ('bo', 'Call Acme back', 'call')
         RETURNING id",
    )
    .fetch_one(&fleet.env.pool)
    .await
    .expect("task");

    let tasks = console.get("/console/tasks?owner=bo").await;
    assert!(tasks.body.contains("Call Acme back"));
    let closed = console
        .post(&format!("/console/tasks/{task}/close"), &[])
        .await;
    assert_eq!(closed.status, StatusCode::SEE_OTHER);
    let (state, by): (String, Option<String>) =
        sqlx::query_as("SELECT state, done_by FROM comms.tasks WHERE id = $1")
            .bind(task)
            .fetch_one(&fleet.env.pool)
            .await
            .expect("task");
    assert_eq!((state.as_str(), by.as_deref()), ("done", Some("olu")));
    let again = console
        .post(&format!("/console/tasks/{task}/close"), &[])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        !console
            .get("/console/tasks?owner=bo")
            .await
            .body
            .contains("Call Acme back")
    );

    let found = console
        .post("/console/messages", &[("by", "key"), ("q", "find-me")])
        .await;
    assert_eq!(found.status, StatusCode::SEE_OTHER);
    let location = found.location.expect("to the message");
    let message = console.get(&location).await;
    assert_eq!(message.status, StatusCode::OK);
    for step in ["received", "dispatching", "sent"] {
        assert!(
            message
                .body
                .contains(&format!("<strong class=\"event\">{step}</strong>")),
            "{step} in the timeline: {}",
            message.body
        );
    }
    let by_recipient = console
        .post("/console/messages", &[("by", "recipient"), ("q", PHONE)])
        .await;
    assert_eq!(by_recipient.status, StatusCode::OK);
    assert!(by_recipient.body.contains("find-me"));
    assert!(
        !by_recipient.body.contains(PHONE),
        "the list shows no recipient"
    );
    let nobody = console
        .post(
            "/console/messages",
            &[("by", "recipient"), ("q", "+1415555")],
        )
        .await;
    assert!(nobody.body.contains("0 message(s)"), "exact match only");
    console.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn the_console_pauses_and_resumes_one_sequence() {
    let fleet = fleet().await;
    // A draft is enough: a sequence pause names a sequence the fleet knows.
    sqlx::query(
        "INSERT INTO comms.sequences (name, version, audience, exit_on, definition, created_by)
         VALUES ('winback', 1, 'leads', '{}', '{}', 'ana')",
    )
    .execute(&fleet.env.pool)
    .await
    .expect("sequence");
    let console = signed_in(&fleet, "olu", Role::Oncall).await;
    let page = console.get("/console/pause").await;
    assert!(
        page.body.contains(r#"value="sequence""#),
        "the pause form offers the sequence scope"
    );
    let form = [
        ("scope", "sequence"),
        ("value", "winback"),
        ("reason", "wrong offer"),
        ("for", ""),
    ];
    let confirm = console.post("/console/pause/confirm", &form).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm
            .body
            .contains("Every step of sequence winback stops.")
    );
    let bad = console
        .post(
            "/console/pause",
            &[
                ("scope", "sequence"),
                ("value", "Win Back"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let paused = console.post("/console/pause", &form).await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER);
    let on = store::active(&fleet.env.pool).await.expect("switch");
    assert_eq!(
        on.iter().map(|p| p.scope.clone()).collect::<Vec<_>>(),
        vec![Scope::Sequence("winback".into())]
    );
    let resumed = console
        .post(
            "/console/resume",
            &[
                ("scope", "sequence"),
                ("value", "winback"),
                ("reason", "fixed"),
            ],
        )
        .await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    assert!(
        store::active(&fleet.env.pool)
            .await
            .expect("switch")
            .is_empty()
    );
    fleet.stop().await;
}
