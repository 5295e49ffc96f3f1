//! Shared helpers for the sandbox integration tests: a fake gateway that records the callbacks it
//! receives, request helpers for both provider faces, and bounded polling.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub const ACCOUNT: &str = comms_sandbox::DEFAULT_TWILIO_ACCOUNT_SID;
pub const TOKEN: &str = comms_sandbox::DEFAULT_TWILIO_AUTH_TOKEN;

/// One callback the fake gateway received.
#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    /// Form parameters (Twilio callbacks).
    pub form: Vec<(String, String)>,
    /// Raw body (SendGrid events).
    pub body: Bytes,
}

impl Hit {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Default)]
struct Shared {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// How many of the next requests to refuse with 500 (exercises the sandbox's retries).
    refuse: Arc<AtomicUsize>,
}

impl Shared {
    fn push(&self, hit: Hit) -> StatusCode {
        let refuse = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        self.hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hit);
        StatusCode::OK
    }
}

/// A tiny axum app on 127.0.0.1:0 standing in for the gateway.
pub struct Gateway {
    pub base_url: String,
    shared: Shared,
}

impl Gateway {
    pub async fn start() -> std::io::Result<Self> {
        let shared = Shared::default();
        async fn form_hook(
            State(s): State<Shared>,
            uri: axum::http::Uri,
            headers: HeaderMap,
            Form(form): Form<Vec<(String, String)>>,
        ) -> StatusCode {
            let path = uri.path().to_owned();
            s.push(Hit {
                path,
                headers,
                form,
                body: Bytes::new(),
            })
        }
        async fn json_hook(
            State(s): State<Shared>,
            uri: axum::http::Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let path = uri.path().to_owned();
            s.push(Hit {
                path,
                headers,
                form: Vec::new(),
                body,
            })
        }
        let app = Router::new()
            .route("/webhooks/twilio/status", post(form_hook))
            .route("/custom/sms-status", post(form_hook))
            .route("/webhooks/sendgrid/events", post(json_hook))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { base_url, shared })
    }

    pub fn refuse_next(&self, n: usize) {
        self.shared.refuse.store(n, Ordering::SeqCst);
    }

    pub fn hits(&self, path: &str) -> Vec<Hit> {
        let hits = self.shared.hits.lock().unwrap_or_else(|e| e.into_inner());
        hits.iter().filter(|h| h.path == path).cloned().collect()
    }

    /// Waits (bounded) until `path` received at least `n` callbacks.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Hit> {
        wait_until(&format!("{n} callbacks on {path}"), || {
            let hits = self.hits(path);
            (hits.len() >= n).then_some(hits)
        })
        .await
    }
}

/// Polls `probe` every 20 ms until it yields, failing the test after 10 s.
pub async fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn twilio_url(base: &str) -> String {
    format!("{base}/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
}

/// Sends an SMS through the Twilio face with basic auth and the given extra form fields.
pub async fn send_sms(
    http: &reqwest::Client,
    base: &str,
    to: &str,
    extra: &[(&str, &str)],
) -> reqwest::Result<reqwest::Response> {
    let mut form = vec![
        ("To", to),
        ("From", "+15005550006"),
        ("Body", "Your code is 123456"),
    ];
    form.extend_from_slice(extra);
    http.post(twilio_url(base))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&form)
        .send()
        .await
}

/// A minimal valid mail/send request for one recipient.
pub fn mail(to: &str) -> Value {
    json!({
        "personalizations": [{ "to": [{ "email": to }], "custom_args": { "comms_id": "m-42" } }],
        "from": { "email": "noreply@comms.example" },
        "subject": "Welcome",
        "content": [
            { "type": "text/plain", "value": "Hello there" },
            { "type": "text/html", "value": "<p>Hello there</p>" }
        ],
        "headers": { "List-Unsubscribe": "<https://comms.example/u/t>" }
    })
}

pub async fn send_email(
    http: &reqwest::Client,
    base: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{base}/v3/mail/send"))
        .bearer_auth("SG.sandbox")
        .json(body)
        .send()
        .await
}
