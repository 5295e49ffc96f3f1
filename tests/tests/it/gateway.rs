//! The gateway over real HTTP on 127.0.0.1, with the real broker and database: provider
//! webhooks with real signatures (valid, invalid, missing, stale), the broker down, and the
//! API-key protected enqueue API. The verifiers' checks against the providers' published vectors
//! are unit tests in the gateway crate (`workers/comms-gateway/src/verify/tests.rs`).

mod admin;
mod api;
mod api_fuzz;
mod content_type;
mod readiness;
mod sequences_api;
mod webhooks;

use std::sync::Arc;

use comms_runtime::runtime::Runtime;
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;
use comms_sandbox::SendGridSigner;
use comms_tests::TestEnv;
use comms_tests::proxy::Proxy;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const TWILIO_TOKEN: &str = "gateway-test-twilio-token";
pub const INBOUND_SECRET: &str = "gateway-test-inbound-secret";

/// How a test signs a Twilio request.
pub enum Sig {
    /// Signed as Twilio would, over the gateway's public URL and the sent parameters.
    Valid,
    /// The header is absent.
    Missing,
    /// This exact header value.
    Is(String),
}

/// A gateway serving a private database and broker namespace on 127.0.0.1:<random>.
pub struct Gateway {
    pub env: TestEnv,
    pub url: String,
    pub signer: SendGridSigner,
    pub http: reqwest::Client,
    shutdown: Shutdown,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        Self::start_with(overrides, |_| {}).await
    }

    /// Like [`Gateway::start`], with the gateway's settings adjusted after loading (for values
    /// the environment cannot express, such as "no key" or a broker URL of a closed port).
    pub async fn start_with(
        overrides: &[(&str, &str)],
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("gateway binds");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let signer = SendGridSigner::generate().expect("signing key");
        let public_key = signer.public_key_base64().to_string();
        let mut all: Vec<(&str, &str)> = vec![
            ("COMMS__GATEWAY__PUBLIC_URL", url.as_str()),
            ("COMMS__PROVIDERS__TWILIO__AUTH_TOKEN", TWILIO_TOKEN),
            (
                "COMMS__PROVIDERS__SENDGRID__WEBHOOK_PUBLIC_KEY",
                public_key.as_str(),
            ),
            ("COMMS__GATEWAY__INBOUND_SECRET", INBOUND_SECRET),
        ];
        all.extend_from_slice(overrides);
        let env = TestEnv::with(&all).await;
        let mut settings = (*env.settings).clone();
        adjust(&mut settings);
        let runtime = Runtime::new(Arc::new(settings), env.pool.clone());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(comms_gateway::serve(listener, runtime, shutdown.clone()));
        Self {
            env,
            url,
            signer,
            http: reqwest::Client::new(),
            shutdown,
            task,
        }
    }

    /// A gateway whose broker connection goes through a [`Proxy`] the test can cut and restore.
    pub async fn behind_proxy() -> (Self, Proxy) {
        let probe = TestEnv::with(&[]).await;
        let real = probe.settings.amqp.url.expose_secret().to_string();
        probe.teardown().await;
        let (hostport, _) = split_broker(&real, "");
        let target = tokio::net::lookup_host(hostport.as_str())
            .await
            .expect("broker address")
            .next()
            .expect("resolved");
        let proxy = Proxy::start(target).await;
        let (_, via_proxy) = split_broker(&real, &proxy.addr.to_string());
        let gw = Self::start_with(&[], |s| s.amqp.url = SecretString::from(via_proxy)).await;
        (gw, proxy)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("gateway task")
            .expect("gateway stops cleanly");
        self.env.teardown().await;
    }

    /// POSTs form `params` to `path` (which may carry a query), signed as `sig` says.
    pub async fn twilio(&self, path: &str, params: &[(&str, &str)], sig: Sig) -> reqwest::Response {
        let body = form(params);
        let mut request = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let signature = match sig {
            Sig::Valid => Some(twilio_signature(&format!("{}{path}", self.url), params)),
            Sig::Missing => None,
            Sig::Is(value) => Some(value),
        };
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        request.send().await.expect("gateway answers")
    }

    /// POSTs `body` to `path` as it is: this content type (if any), this signature (if any).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url))
            .body(body.to_vec());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("gateway answers")
    }

    /// POSTs a SendGrid event body with the given timestamp and signature headers.
    pub async fn sendgrid(
        &self,
        body: &[u8],
        timestamp: Option<&str>,
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/webhooks/sendgrid/events", self.url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(timestamp) = timestamp {
            request = request.header("X-Twilio-Email-Event-Webhook-Timestamp", timestamp);
        }
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Email-Event-Webhook-Signature", signature);
        }
        request.send().await.expect("gateway answers")
    }

    /// POSTs a SendGrid event body signed now with this gateway's key.
    pub async fn sendgrid_signed(&self, body: &[u8]) -> reqwest::Response {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = self.signer.sign(&timestamp, body);
        self.sendgrid(body, Some(&timestamp), Some(&signature))
            .await
    }

    /// Everything now in the status queue (taken).
    pub async fn status_queue(&self) -> Vec<(Vec<u8>, lapin::types::FieldTable)> {
        self.env.drain(&self.env.topology.status_queue().name).await
    }

    pub async fn replies_queue(&self) -> Vec<(Vec<u8>, lapin::types::FieldTable)> {
        self.env
            .drain(&self.env.topology.replies_queue().name)
            .await
    }
}

/// `amqp://user:pass@host:port/vhost` → (`host:port`, the URL with `replacement` as host:port).
fn split_broker(url: &str, replacement: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (userinfo, hostpath) = rest.rsplit_once('@').map_or(("", rest), |(u, h)| (u, h));
    let (hostport, path) = hostpath.split_once('/').unwrap_or((hostpath, ""));
    let at = if userinfo.is_empty() { "" } else { "@" };
    (
        hostport.to_string(),
        format!("{scheme}://{userinfo}{at}{replacement}/{path}"),
    )
}

/// A form body exactly as a provider would encode it.
pub fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// The signature Twilio would send (computed by the sandbox's signer, itself tested against
/// Twilio's published vectors, so the gateway is checked against an independent implementation).
pub fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    comms_sandbox::signing::twilio_signature(TWILIO_TOKEN, url, params)
}

/// A header's value as text.
pub fn header(headers: &lapin::types::FieldTable, key: &str) -> Option<String> {
    comms_runtime::amqp::header_str(headers, key)
}
