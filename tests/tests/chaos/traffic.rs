//! The traffic of the chaos run, as upstream apps and people make it: send requests enqueued half
//! over HTTP (`POST /v1/messages`) and half over AMQP, each retried with its idempotency key until
//! the gateway answered 202 or the broker confirmed (only then is the key "enqueued" and counted);
//! an owner approving half of the portal messages as they come; people replying by SMS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use comms_runtime::amqp::{Outgoing, Publisher};
use comms_runtime::settings::Settings;
use serde_json::json;
use tokio::sync::Semaphore;
use uuid::Uuid;

/// Distinct recipients: the run's personal data, which the privacy check looks for in the logs.
pub const PEOPLE: usize = 500;

pub fn key(n: usize) -> String {
    format!("chaos-{n:06}")
}

/// The number in a key or in a text holding one (`... chaos-000123 ...`).
pub fn number_in(text: &str) -> Option<usize> {
    let at = text.find("chaos-")? + "chaos-".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

pub fn phone(i: usize) -> String {
    format!("+1415555{:04}", 1000 + i % PEOPLE)
}

pub fn email(i: usize) -> String {
    format!("chaos.person{}@example.com", i % PEOPLE)
}

/// Every 20th message is a portal update, which waits for its owner's approval.
pub fn is_portal(n: usize) -> bool {
    n % 20 == 7
}

/// Half of the portal updates are approved during the run; the rest wait, as designed.
pub fn is_approved(n: usize) -> bool {
    n % 40 == 7
}

pub fn channel(n: usize) -> &'static str {
    if is_portal(n) {
        "portal"
    } else if n.is_multiple_of(2) {
        "sms"
    } else {
        "email"
    }
}

/// The send request of message `n`; its reference (the key) is in the text, so the provider's
/// record says which message it is.
pub fn request(n: usize, client_id: Uuid) -> serde_json::Value {
    let key = key(n);
    let (recipient, template, kind) = match channel(n) {
        "sms" => (
            json!({ "phone": phone(n), "name": "Dana" }),
            "chaos-sms",
            "transactional",
        ),
        "email" => (
            json!({ "email": email(n), "name": "Dana" }),
            "chaos-mail",
            "transactional",
        ),
        _ => (
            json!({ "email": email(n) }),
            "chaos-portal",
            "portal_update",
        ),
    };
    json!({
        "idempotency_key": key,
        "channel": channel(n),
        "kind": kind,
        "recipient": recipient,
        "template": { "name": template, "vars": { "name": "Dana", "ref": key } },
        "record": { "type": "client", "id": client_id.to_string() },
        "owner": "ana",
        "source": "chaos",
        "trigger": "chaos.run"
    })
}

/// Where the upstream apps reach the fleet.
#[derive(Clone)]
pub struct Upstream {
    pub http: reqwest::Client,
    pub gateway_url: String,
    pub enqueue_key: String,
    /// The private broker itself (not the workers' proxy: a cut of the fleet's link is not the
    /// upstream app's).
    pub amqp: Settings,
    pub send_exchange: String,
    pub client_id: Uuid,
}

/// What was enqueued: `(message number, when its enqueue was confirmed)`.
pub type Enqueued = Arc<Mutex<Vec<(usize, Instant)>>>;

impl Upstream {
    /// Enqueues messages `numbers` at `rate` per second (at most 64 at once), each retried until
    /// confirmed or `give_up` passes. Returns the numbers that could not be enqueued.
    pub async fn enqueue(
        &self,
        numbers: Vec<usize>,
        rate: f64,
        give_up: Duration,
        enqueued: Enqueued,
    ) -> Vec<usize> {
        let permits = Arc::new(Semaphore::new(64));
        let publisher: Arc<tokio::sync::Mutex<Option<(lapin::Connection, Publisher)>>> =
            Arc::default();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (i, n) in numbers.into_iter().enumerate() {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            let permit = permits.clone().acquire_owned().await.expect("semaphore");
            let (me, enqueued, publisher) = (self.clone(), enqueued.clone(), publisher.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let deadline = Instant::now() + give_up;
                loop {
                    let done = if n.is_multiple_of(4) || n % 4 == 1 {
                        me.post(n).await
                    } else {
                        me.publish(n, &publisher).await
                    };
                    if done {
                        enqueued.lock().expect("enqueued").push((n, Instant::now()));
                        return None;
                    }
                    if Instant::now() >= deadline {
                        return Some(n);
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }));
        }
        let mut refused = Vec::new();
        for task in tasks {
            if let Ok(Some(n)) = task.await {
                refused.push(n);
            }
        }
        refused
    }

    async fn post(&self, n: usize) -> bool {
        self.http
            .post(format!("{}/v1/messages", self.gateway_url))
            .bearer_auth(&self.enqueue_key)
            .json(&request(n, self.client_id))
            .send()
            .await
            .is_ok_and(|r| r.status() == reqwest::StatusCode::ACCEPTED)
    }

    async fn publish(
        &self,
        n: usize,
        slot: &tokio::sync::Mutex<Option<(lapin::Connection, Publisher)>>,
    ) -> bool {
        let body = request(n, self.client_id).to_string();
        let mut slot = slot.lock().await;
        if slot.is_none() {
            let Ok(Ok(connection)) = tokio::time::timeout(
                Duration::from_secs(5),
                comms_runtime::amqp::connect(&self.amqp.amqp, "chaos-upstream"),
            )
            .await
            else {
                return false;
            };
            let Ok(publisher) = Publisher::open(&connection).await else {
                return false;
            };
            *slot = Some((connection, publisher));
        }
        let Some((_, publisher)) = slot.as_ref() else {
            return false;
        };
        let routing_key = format!("send.{}", channel(n));
        let published = tokio::time::timeout(
            Duration::from_secs(10),
            publisher.publish(Outgoing {
                exchange: &self.send_exchange,
                routing_key: &routing_key,
                body: body.as_bytes(),
                message_id: Some(key(n)),
                content_type: Some("application/json"),
                ..Outgoing::default()
            }),
        )
        .await;
        if !matches!(published, Ok(Ok(()))) {
            *slot = None;
            return false;
        }
        true
    }
}

/// The owner's side: one pass approving every waiting portal message chosen for approval.
/// Returns `(approved now, chosen ones still waiting)`.
pub async fn approve_pass(
    http: &reqwest::Client,
    gateway_url: &str,
    owner_key: &str,
    pool: &sqlx::PgPool,
) -> (usize, usize) {
    let waiting: Vec<String> = sqlx::query_scalar(
        "SELECT idempotency_key FROM comms.messages
         WHERE delivery_state = 'awaiting_approval' AND channel = 'portal'",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    let chosen: Vec<String> = waiting
        .into_iter()
        .filter(|k| number_in(k).is_some_and(is_approved))
        .collect();
    let mut approved = 0;
    for key in &chosen {
        let answer = http
            .post(format!("{gateway_url}/v1/approvals/{key}/approve"))
            .bearer_auth(owner_key)
            .json(&json!({ "decided_by": "ana" }))
            .send()
            .await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            approved += 1;
        }
    }
    (approved, chosen.len() - approved)
}

/// A person texts back: the sandbox posts the signed inbound SMS to the gateway. Returns whether
/// the gateway took it (a refused one is the person's text lost at the edge, not the fleet's).
pub async fn reply(sandbox: &comms_sandbox::SandboxClient, from: &str, body: &str) -> bool {
    sandbox
        .inbound(&comms_sandbox::InboundSpec {
            from: from.to_string(),
            body: body.to_string(),
            to: None,
        })
        .await
        .is_ok()
}
