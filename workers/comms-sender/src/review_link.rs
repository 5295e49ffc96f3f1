//! The tracked link of a `review_request` message: the sender signs it over the message's id when
//! it renders the message, as the template variable `review_url` (docs/outcomes.md, "Tracked
//! review links"). The gateway records the click and redirects to the client's review destination.
//!
//! A client without a review destination gets no link: a template that uses `review_url` then
//! cannot render, and the message is blocked as `review_destination_missing` (named, with a task)
//! rather than sent with a dead link.

use chrono::{DateTime, Utc};
use comms_domain::contract::{Kind, ValidSendRequest};
use comms_domain::outcomes::review_link;
use comms_runtime::settings::Settings;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

use crate::preflight::Refusal;

/// The request to render: with `review_url` set for a review request of a client with a review
/// destination; `None` when the request renders as it is.
pub async fn attach(
    pool: &PgPool,
    settings: &Settings,
    request: &ValidSendRequest,
    message_id: Uuid,
    client_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<Option<ValidSendRequest>, sqlx::Error> {
    if request.kind != Kind::ReviewRequest {
        return Ok(None);
    }
    let Some(client) = client_id else {
        return Ok(None);
    };
    if review_link::destination(pool, client).await?.is_none() {
        return Ok(None);
    }
    let ttl = chrono::Duration::from_std(settings.sequences.review_link_ttl)
        .unwrap_or(chrono::Duration::days(90));
    let url = review_link::url(
        &settings.gateway.public_url,
        settings
            .sequences
            .review_link_secret
            .expose_secret()
            .as_bytes(),
        message_id,
        now + ttl,
    );
    Ok(Some(with_link(request, url)))
}

fn with_link(request: &ValidSendRequest, url: String) -> ValidSendRequest {
    let mut linked = request.clone();
    linked
        .template
        .vars
        .insert(review_link::VARIABLE.into(), serde_json::Value::String(url));
    linked
}

/// After a review request without a link failed to render: the refusal to block it with when the
/// missing link is why (the template renders once a link is there).
pub async fn missing_destination(
    pool: &PgPool,
    request: &ValidSendRequest,
    linked: bool,
) -> Result<Option<Refusal>, sqlx::Error> {
    if request.kind != Kind::ReviewRequest || linked {
        return Ok(None);
    }
    let probe = with_link(request, "https://example.invalid/".into());
    Ok(crate::render::render(pool, &probe).await.ok().map(|_| Refusal {
        code: "review_destination_missing",
        detail: "the template uses review_url and the client has no review destination".into(),
        next_action: "set the client's review destination (commsctl reviews destination), then send again",
    }))
}
