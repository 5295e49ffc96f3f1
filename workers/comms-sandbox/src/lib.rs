//! `comms-sandbox`: a local stand-in for Twilio's Messages API and SendGrid's v3 mail/send.
//!
//! It exists so the fleet can be run and tested without real providers: it accepts sends with the
//! providers' request and response shapes, records them for inspection (`/sandbox/messages`),
//! injects faults on demand (`/sandbox/faults`), and, when a gateway URL is configured, posts the
//! signed delivery callbacks the real providers would and simulates inbound SMS
//! (`/sandbox/inbound`). See `docs/sandbox.md`.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

mod callbacks;
pub mod cli;
pub mod client;
mod fault_routes;
pub mod faults;
mod ids;
mod inbound;
mod inspect;
mod sendgrid;
pub mod signing;
mod state;
mod twilio;

pub use client::{ClientError, SandboxClient};
pub use faults::Channel;
pub use faults::{CallbackStatus, Fault, FaultSpec};
pub use ids::is_twilio_sid;
pub use inbound::{InboundSent, InboundSpec};
pub use signing::{KeyError, SendGridSigner};
pub use state::{Provider, RecordedMessage};

/// The Twilio auth token the sandbox expects (with [`DEFAULT_TWILIO_ACCOUNT_SID`]) on API calls
/// and signs status callbacks with, unless configured otherwise. The fleet's default settings use
/// the same pair, so they work against the sandbox out of the box.
pub const DEFAULT_TWILIO_AUTH_TOKEN: &str = "sandbox-twilio-token";

/// The Twilio account SID the sandbox expects unless configured otherwise: Twilio's documented
/// form, `AC` followed by 32 hex digits (the placeholder Twilio's own API examples use).
pub const DEFAULT_TWILIO_ACCOUNT_SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// How the sandbox behaves.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Base URL of the gateway that receives callbacks (e.g. `http://127.0.0.1:8080`). `None`
    /// disables every callback, including those to a request's own `StatusCallback`.
    pub gateway_url: Option<String>,
    /// The account SID a Twilio API call must authenticate as (HTTP basic user name).
    pub twilio_account_sid: String,
    /// The auth token a Twilio API call must authenticate with (HTTP basic password); also the key
    /// for `X-Twilio-Signature` on status callbacks, as with real Twilio.
    pub twilio_auth_token: String,
    /// Key for the SendGrid Event Webhook signature.
    pub sendgrid_signer: SendGridSigner,
    /// Wait before each callback (default zero), to model provider latency.
    pub callback_delay: Duration,
    /// Extra attempts per callback after a failure (default 3, backoff from 100 ms doubling, at
    /// most 5 s).
    pub callback_retries: u32,
}

impl SandboxConfig {
    /// Defaults: no callbacks, the default Twilio account SID and token, and `signer` for SendGrid events.
    pub fn new(sendgrid_signer: SendGridSigner) -> Self {
        Self {
            gateway_url: None,
            twilio_account_sid: DEFAULT_TWILIO_ACCOUNT_SID.to_owned(),
            twilio_auth_token: DEFAULT_TWILIO_AUTH_TOKEN.to_owned(),
            sendgrid_signer,
            callback_delay: Duration::ZERO,
            callback_retries: 3,
        }
    }

    /// Defaults with a freshly generated SendGrid signing key.
    pub fn generated() -> Result<Self, KeyError> {
        Ok(Self::new(SendGridSigner::generate()?))
    }

    /// Sets the gateway URL, enabling callbacks.
    pub fn with_gateway(mut self, url: impl Into<String>) -> Self {
        self.gateway_url = Some(url.into());
        self
    }
}

fn router(state: state::AppState) -> Router {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages.json",
            post(twilio::create_message),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages/{resource}",
            get(twilio::fetch_message),
        )
        .route("/v3/mail/send", post(sendgrid::send_mail))
        .route(
            "/sandbox/messages",
            get(inspect::list_messages).delete(inspect::clear_messages),
        )
        .route(
            "/sandbox/faults",
            get(fault_routes::list)
                .post(fault_routes::create)
                .delete(fault_routes::clear),
        )
        .route("/sandbox/faults/{id}", delete(fault_routes::delete_one))
        .route("/sandbox/inbound", post(inbound::simulate))
        .route("/sandbox/healthz", get(inspect::healthz))
        .route("/sandbox/signing-key", get(inspect::signing_key))
        .with_state(state)
}

/// Serves the sandbox on `listener` until `shutdown` completes, then drains in-flight requests
/// (hanging faults answer 503 at once) and stops pending callbacks.
pub async fn serve(
    listener: TcpListener,
    config: SandboxConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = router(state::AppState::new(config, stop_rx)?);
    let stop_tx2 = stop_tx.clone();
    let signal = async move {
        shutdown.await;
        stop_tx2.send_replace(true);
    };
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await;
    stop_tx.send_replace(true);
    result
}

/// A sandbox running in the background on `127.0.0.1` with an OS-chosen port; for tests.
/// Dropping it also shuts the server down.
#[derive(Debug)]
pub struct RunningSandbox {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningSandbox {
    /// Binds `127.0.0.1:0` and serves `config` in a background task.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            // Either an explicit stop or the handle being dropped.
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve(listener, config, shutdown));
        Ok(Self {
            addr,
            stop: Some(stop),
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the base URL to give senders as both provider API bases.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for the `/sandbox/` API.
    pub fn client(&self) -> SandboxClient {
        SandboxClient::new(self.base_url())
    }

    /// Shuts down gracefully and waits for the server to finish.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let Self { stop, task, .. } = self;
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        task.await.map_err(std::io::Error::other)?
    }
}
