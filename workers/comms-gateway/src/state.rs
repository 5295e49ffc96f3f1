//! Everything a gateway request needs, built and validated once at start.

use std::sync::Arc;

use axum::extract::FromRef;
use comms_runtime::runtime::Runtime;
use comms_runtime::settings::Settings;
use comms_runtime::topology::Topology;
use p256::ecdsa::VerifyingKey;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::auth::ApiKeys;
use crate::broker::BrokerLink;
use crate::status_api::{Prior, Submission};
use crate::verify::sendgrid;
use crate::write_batch::WriteBatch;

/// Why the gateway cannot start with these settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    SendgridKey(#[from] sendgrid::KeyError),
    #[error("gateway.public_url must be an http:// or https:// URL (got `{0}`)")]
    PublicUrl(String),
}

/// Shared by every request; cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    pub topology: Topology,
    pub broker: BrokerLink,
    pub keys: ApiKeys,
    /// Records which app submitted each enqueued key, batched across concurrent requests.
    pub submissions: WriteBatch<Submission, Prior>,
    /// `gateway.public_url` without a trailing slash: the base of the URLs Twilio signs.
    pub public_url: String,
    /// Every configured Twilio account as `(AccountSid, auth token)`, the primary first: a
    /// callback is verified with the token of the account that sent the message.
    pub twilio_accounts: Vec<(String, SecretString)>,
    /// `None` when no key is configured: signed events are then refused with 503.
    pub sendgrid_key: Option<VerifyingKey>,
    /// SHA-256 of `gateway.inbound_secret`, compared in constant time with the path's.
    pub inbound_secret_hash: [u8; 32],
}

impl GatewayState {
    /// Validates the gateway's settings and prepares the (lazy) broker link.
    pub fn new(runtime: &Runtime) -> Result<Self, ConfigError> {
        let settings = runtime.settings.clone();
        let public_url = settings
            .gateway
            .public_url
            .trim_end_matches('/')
            .to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(ConfigError::PublicUrl(public_url));
        }
        let sendgrid_key = settings
            .providers
            .sendgrid
            .webhook_public_key
            .as_deref()
            .filter(|key| !key.trim().is_empty())
            .map(sendgrid::parse_public_key)
            .transpose()?;
        let inbound_secret_hash =
            secret_hash(settings.gateway.inbound_secret.expose_secret().as_bytes());
        Ok(Self {
            inner: Arc::new(Inner {
                pool: runtime.pool.clone(),
                topology: runtime.topology.clone(),
                broker: BrokerLink::new(settings.amqp.clone(), runtime.topology.clone()),
                keys: ApiKeys::new(runtime.pool.clone()),
                submissions: crate::status_api::submission_batch(runtime.pool.clone()),
                public_url,
                twilio_accounts: settings
                    .providers
                    .twilio_accounts()
                    .map(|a| (a.account_sid.clone(), a.auth_token.clone()))
                    .collect(),
                sendgrid_key,
                inbound_secret_hash,
                settings,
            }),
        })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Closes the broker link once no request can use it any more.
    pub async fn close(&self) {
        self.inner.broker.close().await;
    }
}

impl FromRef<GatewayState> for ApiKeys {
    fn from_ref(state: &GatewayState) -> Self {
        state.inner.keys.clone()
    }
}

pub(crate) fn secret_hash(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}
