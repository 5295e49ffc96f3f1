//! A typed client for the sandbox's own `/sandbox/` API, so other crates' integration tests can arm
//! faults and read back accepted messages without hand-writing the JSON.

use std::time::Duration;

use reqwest::StatusCode;

use crate::faults::{Fault, FaultSpec};
use crate::inbound::{InboundSent, InboundSpec};
use crate::state::RecordedMessage;

/// Why a call to the sandbox failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("sandbox request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("sandbox answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("timed out after {0:?} waiting for messages")]
    Timeout(Duration),
}

/// Talks to a running sandbox at `base_url` (e.g. `http://127.0.0.1:8025`).
#[derive(Clone, Debug)]
pub struct SandboxClient {
    base_url: String,
    http: reqwest::Client,
}

impl SandboxClient {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Err(ClientError::Status { status, body })
    }

    /// Every accepted message, in acceptance order.
    pub async fn messages(&self) -> Result<Vec<RecordedMessage>, ClientError> {
        let response = self.http.get(self.url("/sandbox/messages")).send().await?;
        Ok(Self::check(response).await?.json().await?)
    }

    /// Accepted messages for one recipient.
    pub async fn messages_to(&self, to: &str) -> Result<Vec<RecordedMessage>, ClientError> {
        let request = self
            .http
            .get(self.url("/sandbox/messages"))
            .query(&[("to", to)]);
        Ok(Self::check(request.send().await?).await?.json().await?)
    }

    /// Polls until at least `count` messages were accepted, or `timeout` passes.
    pub async fn wait_for_messages(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedMessage>, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages().await?;
            if messages.len() >= count {
                return Ok(messages);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn clear_messages(&self) -> Result<(), ClientError> {
        let response = self
            .http
            .delete(self.url("/sandbox/messages"))
            .send()
            .await?;
        Self::check(response).await.map(drop)
    }

    /// Arms a fault; returns it with its id.
    pub async fn add_fault(&self, spec: &FaultSpec) -> Result<Fault, ClientError> {
        let response = self
            .http
            .post(self.url("/sandbox/faults"))
            .json(spec)
            .send()
            .await?;
        Ok(Self::check(response).await?.json().await?)
    }

    pub async fn faults(&self) -> Result<Vec<Fault>, ClientError> {
        let response = self.http.get(self.url("/sandbox/faults")).send().await?;
        Ok(Self::check(response).await?.json().await?)
    }

    pub async fn clear_faults(&self) -> Result<(), ClientError> {
        let response = self.http.delete(self.url("/sandbox/faults")).send().await?;
        Self::check(response).await.map(drop)
    }

    /// Has the sandbox send the gateway an inbound SMS (`POST /sandbox/inbound`), signed as
    /// Twilio signs it; returns once the gateway accepted it.
    pub async fn inbound(&self, spec: &InboundSpec) -> Result<InboundSent, ClientError> {
        let response = self
            .http
            .post(self.url("/sandbox/inbound"))
            .json(spec)
            .send()
            .await?;
        Ok(Self::check(response).await?.json().await?)
    }
}
