//! Reply capture against the real broker, database, sender and sandbox: replies reach owners,
//! keywords change consent, auto-replies open no task, and nothing inbound is dropped.

use clap::Parser;
use comms_runtime::amqp::Outgoing;
use comms_runtime::runtime::Runtime;
use comms_runtime::shutdown::Shutdown;
use comms_tests::eventually;
use comms_tests::fleet::{SendFleet, sms_request};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

mod content_type;
mod retried;

const WAIT: Duration = Duration::from_secs(30);
const PHONE: &str = "+14155552671";
const OUR_NUMBER: &str = "+15005550006";

struct Replies {
    fleet: SendFleet,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replies {
    async fn start() -> Self {
        let fleet = SendFleet::start(&[]).await;
        fleet
            .approved_template("welcome", "sms", None, "Hi {{ name }}!")
            .await;
        fleet
            .approved_template(
                "sms_opt_out_confirmation",
                "sms",
                None,
                "You are unsubscribed. No more messages will be sent.",
            )
            .await;
        fleet
            .approved_template(
                "sms_help",
                "sms",
                None,
                "Acme updates. Msg&data rates may apply. Text STOP to cancel.",
            )
            .await;
        let runtime = Runtime::new(fleet.env.settings.clone(), fleet.env.pool.clone());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(comms_replies::run(runtime, shutdown.clone()));
        Self {
            fleet,
            shutdown,
            task,
        }
    }

    async fn inbound(&self, routing_key: &str, content_type: &str, body: &[u8]) {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-comms-content-type".into(),
            AMQPValue::LongString(content_type.into()),
        );
        let env = &self.fleet.env;
        env.publisher
            .publish(Outgoing {
                exchange: &env.topology.provider_exchange(),
                routing_key,
                body,
                headers,
                content_type: Some(content_type),
                ..Outgoing::default()
            })
            .await
            .expect("inbound published");
    }

    async fn sms(&self, sid: &str, from: &str, body: &str) {
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("MessageSid", sid)
            .append_pair("From", from)
            .append_pair("To", OUR_NUMBER)
            .append_pair("Body", body)
            .finish();
        self.inbound(
            "inbound.twilio",
            "application/x-www-form-urlencoded",
            form.as_bytes(),
        )
        .await;
    }

    async fn email(&self, fields: &[(&str, &str)]) {
        let mut body = String::new();
        for (name, value) in fields {
            body.push_str(&format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str("--XyZ--\r\n");
        self.inbound(
            "inbound.sendgrid",
            "multipart/form-data; boundary=XyZ",
            body.as_bytes(),
        )
        .await;
    }

    async fn inbound_count(&self, classification: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM internal.inbound_messages WHERE classification = $1",
        )
        .bind(classification)
        .fetch_one(&self.fleet.env.pool)
        .await
        .expect("count")
    }

    async fn consent(&self, phone: &str) -> Option<String> {
        sqlx::query_scalar("SELECT consent_state FROM comms.contact_channels WHERE channel = 'sms' AND address = $1")
            .bind(phone)
            .fetch_optional(&self.fleet.env.pool)
            .await
            .expect("consent")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("task").expect("replies stops");
        self.fleet.stop().await;
    }
}

async fn message_id(r: &Replies, key: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM comms.messages WHERE idempotency_key = $1")
        .bind(key)
        .fetch_one(&r.fleet.env.pool)
        .await
        .expect("id")
}

async fn sent_sms(r: &Replies, key: &str) {
    r.fleet
        .send(&sms_request(key, PHONE, r.fleet.client_id))
        .await;
    assert!(r.fleet.reaches(key, "sent").await);
}

#[tokio::test]
async fn an_sms_reply_reaches_the_owner_and_its_response_time_is_recorded() {
    let r = Replies::start().await;
    sent_sms(&r, "hello-1").await;
    r.sms("SMreply1", PHONE, "Thanks! Can we move Tuesday's call?")
        .await;
    assert!(eventually(WAIT, || async { r.inbound_count("reply").await == 1 }).await);
    let reply_state: String = sqlx::query_scalar(
        "SELECT reply_state FROM comms.messages WHERE idempotency_key = 'hello-1'",
    )
    .fetch_one(&r.fleet.env.pool)
    .await
    .expect("state");
    assert_eq!(reply_state, "replied");
    assert!(
        r.fleet
            .timeline("hello-1")
            .await
            .contains(&"reply_received".to_string())
    );
    let (task, owner, title): (Uuid, String, String) = sqlx::query_as(
        "SELECT id, owner, title FROM comms.tasks WHERE inbound_id IS NOT NULL AND state = 'open'",
    )
    .fetch_one(&r.fleet.env.pool)
    .await
    .expect("task");
    assert_eq!(
        (owner.as_str(), title.as_str()),
        ("ana", "Reply needs a response")
    );
    // A redelivery of the same inbound message changes nothing.
    r.sms("SMreply1", PHONE, "Thanks! Can we move Tuesday's call?")
        .await;
    let queue = r.fleet.env.topology.replies_queue().name;
    assert!(eventually(WAIT, || async { r.fleet.env.depth(&queue).await == 0 }).await);
    assert_eq!(r.inbound_count("reply").await, 1);

    let cli = commsctl::Cli::try_parse_from([
        "commsctl",
        "tasks",
        "done",
        &task.to_string(),
        "--by",
        "ana",
    ])
    .expect("args");
    commsctl::run_with(cli, &r.fleet.env.settings)
        .await
        .expect("tasks done");
    let responded: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT responded_at FROM internal.inbound_messages")
            .fetch_one(&r.fleet.env.pool)
            .await
            .expect("responded");
    assert!(responded.is_some(), "the response time is recorded");
    r.stop().await;
}

#[tokio::test]
async fn an_unmatched_reply_goes_to_triage_and_a_sentence_with_stop_is_not_an_opt_out() {
    let r = Replies::start().await;
    r.sms("SMunknown", "+14155550999", "who is this?").await;
    sent_sms(&r, "hello-2").await;
    r.sms("SMsentence", PHONE, "please stop texting me so early")
        .await;
    assert!(
        eventually(WAIT, || async {
            r.inbound_count("unmatched").await == 1 && r.inbound_count("reply").await == 1
        })
        .await
    );
    let triage: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM comms.tasks WHERE owner = 'triage' AND state = 'open'",
    )
    .fetch_one(&r.fleet.env.pool)
    .await
    .expect("triage");
    assert_eq!(triage, 1);
    let reason: String = sqlx::query_scalar(
        "SELECT reason FROM comms.tasks WHERE owner = 'ana' AND inbound_id IS NOT NULL",
    )
    .fetch_one(&r.fleet.env.pool)
    .await
    .expect("reason");
    assert!(reason.contains("mentions stopping"), "{reason}");
    assert_eq!(
        r.consent(PHONE).await.as_deref(),
        Some("unknown"),
        "not an opt-out"
    );
    r.stop().await;
}

#[tokio::test]
async fn stop_opts_out_with_one_confirmation_start_opts_back_in() {
    let r = Replies::start().await;
    sent_sms(&r, "hello-3").await;
    r.sms("SMstop1", PHONE, "  sToP \n").await;
    assert!(
        eventually(WAIT, || async {
            r.consent(PHONE).await.as_deref() == Some("opted_out")
        })
        .await
    );
    r.sms("SMstop2", PHONE, "STOP").await;
    assert!(eventually(WAIT, || async { r.inbound_count("opt_out").await == 2 }).await);
    // Exactly one confirmation reaches the phone, however many STOPs.
    let sandbox = r.fleet.sandbox();
    assert!(
        eventually(WAIT, || async {
            sandbox.messages().await.map(|m| m.len()).unwrap_or(0) == 2
        })
        .await
    );
    let confirmations: Vec<_> = sandbox
        .messages()
        .await
        .expect("sandbox")
        .into_iter()
        .filter(|m| m.body.contains("unsubscribed"))
        .collect();
    assert_eq!(confirmations.len(), 1);
    assert!(
        r.fleet
            .timeline("hello-3")
            .await
            .contains(&"opted_out".to_string())
    );
    // A send after the opt-out is refused before any provider call.
    r.fleet
        .send(&sms_request("after-stop", PHONE, r.fleet.client_id))
        .await;
    assert!(r.fleet.reaches("after-stop", "blocked").await);
    assert_eq!(
        r.fleet.failure("after-stop").await.0.as_deref(),
        Some("opted_out")
    );

    r.sms("SMstart", PHONE, "start").await;
    assert!(
        eventually(WAIT, || async {
            r.consent(PHONE).await.as_deref() == Some("express")
        })
        .await
    );
    r.fleet
        .send(&sms_request("after-start", PHONE, r.fleet.client_id))
        .await;
    assert!(r.fleet.reaches("after-start", "sent").await);
    r.stop().await;
}

#[tokio::test]
async fn help_is_answered_with_the_help_template() {
    let r = Replies::start().await;
    sent_sms(&r, "hello-4").await;
    r.sms("SMhelp", PHONE, "help").await;
    let sandbox = r.fleet.sandbox();
    assert!(
        eventually(WAIT, || async {
            sandbox
                .messages()
                .await
                .map(|m| m.iter().any(|m| m.body.contains("Text STOP to cancel")))
                .unwrap_or(false)
        })
        .await
    );
    r.stop().await;
}

#[tokio::test]
async fn email_replies_match_by_reply_token_or_thread_and_auto_replies_open_no_task() {
    let r = Replies::start().await;
    r.fleet
        .approved_template("report", "email", Some("Your report"), "Hello {{ name }}")
        .await;
    for key in ["mail-1", "mail-2", "mail-3"] {
        r.fleet
            .send(&json!({
                "idempotency_key": key, "channel": "email", "kind": "transactional",
                "recipient": { "email": format!("{key}@example.com") },
                "template": { "name": "report", "vars": { "name": "Dana" } },
                "record": { "type": "client", "id": r.fleet.client_id.to_string() },
                "owner": "ana", "source": "reporting", "trigger": "report.published"
            }))
            .await;
        assert!(r.fleet.reaches(key, "sent").await);
    }
    let delivered = r.fleet.sandbox().messages().await.expect("sandbox");
    let first = message_id(&r, "mail-1").await;
    let headers = delivered
        .iter()
        .find(|m| m.to == "mail-1@example.com")
        .and_then(|m| m.headers.clone())
        .expect("headers");
    assert_eq!(
        headers["Message-ID"],
        json!(format!("<comms.{first}@replies.example.com>"))
    );

    let token_to = format!("reply+{}@replies.example.com", first.simple());
    r.email(&[
        ("from", "Dana <mail-1@example.com>"),
        ("to", &token_to),
        ("subject", "Re: Your report"),
        ("text", "Looks good"),
        ("headers", "Message-ID: <r1@example.com>\r\n"),
    ])
    .await;
    let second = message_id(&r, "mail-2").await;
    let thread = format!(
        "Message-ID: <r2@example.com>\r\nIn-Reply-To: <comms.{second}@replies.example.com>\r\n"
    );
    r.email(&[
        ("from", "mail-2@example.com"),
        ("to", "updates@example.com"),
        ("subject", "Re: Your report"),
        ("text", "Thanks"),
        ("headers", &thread),
    ])
    .await;
    let third = message_id(&r, "mail-3").await;
    let auto = format!(
        "Message-ID: <r3@example.com>\r\nAuto-Submitted: auto-replied\r\nIn-Reply-To: <comms.{third}@replies.example.com>\r\n"
    );
    r.email(&[
        ("from", "mail-3@example.com"),
        ("to", "updates@example.com"),
        ("subject", "Out of Office"),
        ("text", "I am away"),
        ("headers", &auto),
    ])
    .await;

    assert!(
        eventually(WAIT, || async {
            r.inbound_count("reply").await == 2 && r.inbound_count("auto_reply").await == 1
        })
        .await
    );
    let states: Vec<(String, String)> = sqlx::query_as(
        "SELECT idempotency_key, reply_state FROM comms.messages ORDER BY idempotency_key",
    )
    .fetch_all(&r.fleet.env.pool)
    .await
    .expect("states");
    assert_eq!(
        states,
        [
            ("mail-1".into(), "replied".into()),
            ("mail-2".into(), "replied".into()),
            ("mail-3".into(), "auto_reply".into())
        ]
    );
    let tasks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM comms.tasks WHERE inbound_id IS NOT NULL")
            .fetch_one(&r.fleet.env.pool)
            .await
            .expect("tasks");
    assert_eq!(tasks, 2, "the auto-reply opened no task");
    r.stop().await;
}
