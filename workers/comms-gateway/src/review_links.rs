//! Tracked review links: `GET /reviews/go/{token}`, the link a `review_request` message carries
//! (template variable `review_url`, docs/outcomes.md "Tracked review links").
//!
//! The token is signed with `sequences.review_link_secret` over exactly what is acted on — the
//! message and the expiry (`comms_domain::outcomes::review_link`) — and checked before anything in
//! it is believed. A forged or altered link is refused with 403, an expired one with 410, and
//! neither is recorded. A genuine link records the `clicked` review outcome against the message
//! and its record (once per message: the outcome id is the message's), then redirects (303) to the
//! client's review destination, which is read from the database, never from the link.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use comms_domain::outcomes::review_link::{self, Followed, LinkError};
use secrecy::ExposeSecret;

use crate::metrics::gateway as metrics;
use crate::reply;
use crate::state::GatewayState;

fn count(outcome: &str) {
    metrics().review_links.with_label_values(&[outcome]).inc();
}

/// `GET /reviews/go/{token}`
pub async fn follow(State(state): State<GatewayState>, Path(token): Path<String>) -> Response {
    let inner = state.inner();
    let secret = inner
        .settings
        .sequences
        .review_link_secret
        .expose_secret()
        .as_bytes();
    let message_id = match review_link::verify(secret, &token, Utc::now()) {
        Ok(id) => id,
        Err(LinkError::Forged) => {
            count("forged");
            return reply::error(
                StatusCode::FORBIDDEN,
                "invalid_link",
                "this review link is not valid; use the link from your message as it was sent",
            );
        }
        Err(LinkError::Expired) => {
            count("expired");
            return reply::error(
                StatusCode::GONE,
                "link_expired",
                "this review link has expired",
            );
        }
    };
    match review_link::follow(&inner.pool, message_id, Utc::now()).await {
        Ok(Followed::Redirect { destination, first }) => {
            count(if first { "first" } else { "repeat" });
            if first {
                tracing::info!(message.id = %message_id, "review link followed");
            }
            redirect(&destination)
        }
        Ok(Followed::Unavailable) => {
            count("unknown");
            reply::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "this review page is no longer available",
            )
        }
        Err(error) => {
            count("unavailable");
            tracing::warn!(error = %error, message.id = %message_id, "a review link click could not be recorded");
            reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the review page cannot be opened right now; please try again",
            )
        }
    }
}

/// 303 to `destination`; the token never leaves as a referrer and nothing caches the hop.
fn redirect(destination: &str) -> Response {
    let Ok(location) = HeaderValue::from_str(destination) else {
        return reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this review page is no longer available",
        );
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
