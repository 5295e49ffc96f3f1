//! Webhooks out: registering an app's endpoint, and the address rule that keeps the fleet from
//! being used to reach internal services (server-side request forgery).
//!
//! Registration lives here, not in a worker, because `commsctl`, the admin API and the delivering
//! worker (`comms-events`) all need the same checks. A URL is refused when any address it resolves
//! to is loopback, private, link-local, unique-local, shared (CGNAT), multicast or unspecified,
//! unless `events.webhook_allow_private` is set; the worker checks again at every delivery and
//! connects only to the address it checked, so a DNS answer that changes later cannot redirect it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rand::RngCore;
use sqlx::PgPool;
use uuid::Uuid;

/// Why a webhook could not be registered or reached.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("url: {0}")]
    InvalidUrl(String),
    #[error(
        "url: {host} resolves to {address}, a loopback, private or link-local address; \
         webhooks may only call public addresses (events.webhook_allow_private allows others)"
    )]
    ForbiddenAddress { host: String, address: IpAddr },
    #[error(
        "events: `{0}` is not an event type (message.<event>, task.opened|overdue|closed, incident.<event>, digest.<event>, or *)"
    )]
    UnknownEvent(String),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A URL that passed the address rule, with the addresses to connect to.
#[derive(Debug, Clone)]
pub struct CheckedUrl {
    pub url: reqwest::Url,
    pub host: String,
    pub addresses: Vec<SocketAddr>,
}

/// True for addresses a webhook must not reach.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
}

/// Parses `url` and resolves its host; refuses forbidden addresses unless `allow_private`.
pub async fn check_url(url: &str, allow_private: bool) -> Result<CheckedUrl, WebhookError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| WebhookError::InvalidUrl(format!("{e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(WebhookError::InvalidUrl(
            "must be an http:// or https:// URL".into(),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(WebhookError::InvalidUrl(
            "must not carry credentials; the signature authenticates the fleet".into(),
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| WebhookError::InvalidUrl("has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| WebhookError::InvalidUrl("has no port".into()))?;
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| WebhookError::InvalidUrl(format!("{host} does not resolve: {e}")))?
        .collect();
    if addresses.is_empty() {
        return Err(WebhookError::InvalidUrl(format!("{host} has no address")));
    }
    if !allow_private && let Some(bad) = addresses.iter().find(|a| is_forbidden(a.ip())) {
        return Err(WebhookError::ForbiddenAddress {
            host,
            address: bad.ip(),
        });
    }
    Ok(CheckedUrl {
        url: parsed,
        host,
        addresses,
    })
}

/// Event types a webhook may subscribe to: `message.<event>`, `task.<event>`, or `*` for all.
pub fn valid_event_type(name: &str) -> bool {
    if name == "*" {
        return true;
    }
    if let Some(event) = name.strip_prefix("digest.") {
        return matches!(
            event,
            "built" | "blocked" | "approved" | "published" | "superseded" | "viewed"
        );
    }
    if let Some(event) = name.strip_prefix("incident.") {
        return matches!(
            event,
            "declared" | "updated" | "facts_verified" | "resolved"
        );
    }
    let Some(event) = name
        .strip_prefix("message.")
        .or_else(|| name.strip_prefix("task."))
    else {
        return false;
    };
    if name.starts_with("task.") {
        return matches!(event, "opened" | "overdue" | "closed");
    }
    !event.is_empty() && event.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// A webhook to register.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// The app whose events it receives; `None` receives every app's (an on-call integration).
    pub app: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    /// Who is told (a task) when it is disabled.
    pub owner: String,
}

/// A registered webhook and its signing secret, which is shown this once.
#[derive(Debug, Clone)]
pub struct Registered {
    pub id: Uuid,
    pub secret: String,
}

/// Checks and stores a webhook, returning its id and new secret.
pub async fn register(
    pool: &PgPool,
    new: &NewWebhook,
    allow_private: bool,
) -> Result<Registered, WebhookError> {
    if new.events.is_empty() {
        return Err(WebhookError::Invalid(
            "events: name at least one event type",
        ));
    }
    if let Some(bad) = new.events.iter().find(|e| !valid_event_type(e)) {
        return Err(WebhookError::UnknownEvent(bad.clone()));
    }
    if new.owner.trim().is_empty() {
        return Err(WebhookError::Invalid(
            "owner: name who is told when it fails",
        ));
    }
    if new.app.as_deref().is_some_and(|a| a.trim().is_empty()) {
        return Err(WebhookError::Invalid("app: must not be empty"));
    }
    check_url(&new.url, allow_private).await?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "whsec_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.webhooks (app, url, events, secret, owner) VALUES ($1, $2, $3, $4, $5)
         RETURNING id",
    )
    .bind(&new.app)
    .bind(&new.url)
    .bind(&new.events)
    .bind(&secret)
    .bind(new.owner.trim())
    .fetch_one(pool)
    .await?;
    Ok(Registered { id, secret })
}

/// A registered webhook as operators see it (never its secret).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct WebhookSummary {
    pub id: Uuid,
    pub app: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    pub owner: String,
    pub state: String,
    pub consecutive_failures: i32,
    pub disabled_reason: Option<String>,
}

/// Every webhook that is not removed, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<WebhookSummary>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, app, url, events, owner, state, consecutive_failures, disabled_reason
         FROM comms.webhooks WHERE state <> 'removed' ORDER BY created_at",
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_forbidden_and_public_ones_are_not() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_forbidden(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(!is_forbidden(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_url_pointing_inside_is_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.5/hook",
        ] {
            let refused = check_url(url, false).await.expect_err(url);
            assert!(
                matches!(refused, WebhookError::ForbiddenAddress { .. }),
                "{url}: {refused}"
            );
            check_url(url, true).await.expect(url);
        }
        for url in [
            "ftp://example.com/x",
            "http://user:pw@example.com/x",
            "not a url",
        ] {
            assert!(matches!(
                check_url(url, true).await,
                Err(WebhookError::InvalidUrl(_))
            ));
        }
    }

    #[test]
    fn event_types_are_checked() {
        for ok in [
            "*",
            "message.delivered",
            "message.opted_out",
            "task.overdue",
            "digest.viewed",
        ] {
            assert!(valid_event_type(ok), "{ok}");
        }
        for bad in [
            "delivered",
            "message.",
            "task.done",
            "message.Delivered",
            "incident.x",
        ] {
            assert!(!valid_event_type(bad), "{bad}");
        }
    }
}
