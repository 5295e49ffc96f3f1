//! Tracked review links: every `review_request` message carries one (template variable
//! `review_url`), and following it records the `clicked` review outcome against the message and
//! its record, then sends the person on to the client's review page (docs/outcomes.md).
//!
//! The token is signed ([`crate::signed_link`], secret `sequences.review_link_secret`) over
//! exactly what the gateway acts on: the message id and the expiry. Where the link leads is not in
//! the token: it is the client's review destination (`comms.review_destinations`), read when the
//! link is followed, so a link can never be made to redirect anywhere an owner did not set.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::signed_link;
pub use crate::signed_link::LinkError;

use super::{Attribution, OutcomeError, OutcomeRequest, Review};

/// The path of the endpoint on the gateway; a link is `<gateway.public_url>{PATH}<token>`.
pub const PATH: &str = "/reviews/go/";

/// The template variable a `review_request` message's link is rendered into.
pub const VARIABLE: &str = "review_url";

/// The `source` of the outcomes the link records.
pub const SOURCE: &str = "review-link";

/// The full link to message `message_id`, valid until `expires_at`.
pub fn url(base: &str, secret: &[u8], message_id: Uuid, expires_at: DateTime<Utc>) -> String {
    let token = signed_link::sign(secret, message_id.as_bytes(), expires_at);
    format!("{}{PATH}{token}", base.trim_end_matches('/'))
}

/// The message a genuine, unexpired token names at `now`.
pub fn verify(secret: &[u8], token: &str, now: DateTime<Utc>) -> Result<Uuid, LinkError> {
    let (fields, _) = signed_link::verify(secret, token, 16, now)?;
    Uuid::from_slice(&fields).map_err(|_| LinkError::Forged)
}

/// The outcome id of a message's click: one per message however often the link is followed.
pub fn click_id(message_id: Uuid) -> String {
    format!("review-click:{message_id}")
}

/// The review destination of `client`, if one is set.
pub async fn destination(pool: &PgPool, client: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT url FROM comms.review_destinations WHERE client_id = $1")
        .bind(client)
        .fetch_optional(pool)
        .await
}

/// Sets (or replaces) the review destination of `client`: an `https://` URL.
pub async fn set_destination(
    pool: &PgPool,
    client: Uuid,
    url: &str,
    by: &str,
) -> Result<(), OutcomeError> {
    let url = url.trim();
    let host = url.strip_prefix("https://").unwrap_or_default();
    if host.is_empty()
        || host.starts_with('/')
        || url.len() > 2000
        || url.contains(char::is_whitespace)
    {
        return Err(OutcomeError::refused(
            "invalid_destination",
            "url: expected an https:// URL of at most 2000 characters",
        ));
    }
    if by.trim().is_empty() {
        return Err(OutcomeError::refused(
            "invalid_destination",
            "by: who sets it must be named",
        ));
    }
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM comms.clients WHERE id = $1)")
            .bind(client)
            .fetch_one(pool)
            .await?;
    if !exists {
        return Err(OutcomeError::refused(
            "unknown_client",
            "client: no client with this id",
        ));
    }
    sqlx::query(
        "INSERT INTO comms.review_destinations (client_id, url, set_by) VALUES ($1, $2, $3)
         ON CONFLICT (client_id) DO UPDATE SET url = EXCLUDED.url, set_by = EXCLUDED.set_by, set_at = now()",
    )
    .bind(client)
    .bind(url)
    .bind(by.trim())
    .execute(pool)
    .await?;
    Ok(())
}

/// What following a genuine link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// The click is recorded (or was already): send the person on to `destination`.
    Redirect { destination: String, first: bool },
    /// No review request with this id, or its client has no review destination (any more).
    Unavailable,
}

/// Records the `clicked` outcome of review request `message_id` (once per message) and returns
/// where to send the person.
pub async fn follow(
    pool: &PgPool,
    message_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Followed, OutcomeError> {
    let found: Option<(String, Option<Uuid>)> =
        sqlx::query_as("SELECT kind, client_id FROM comms.messages WHERE id = $1")
            .bind(message_id)
            .fetch_optional(pool)
            .await?;
    let Some(("review_request", Some(client))) = found.as_ref().map(|(k, c)| (k.as_str(), *c))
    else {
        return Ok(Followed::Unavailable);
    };
    let Some(destination) = destination(pool, client).await? else {
        return Ok(Followed::Unavailable);
    };
    let click = OutcomeRequest {
        schema: None,
        outcome_id: click_id(message_id),
        outcome_type: "review".into(),
        occurred_at: None,
        source: SOURCE.into(),
        owner: None,
        booked: None,
        review: Some(Review {
            result: "clicked".into(),
            platform: None,
            rating: None,
        }),
        attributed_to: Attribution {
            message: Some(message_id.to_string()),
            ..Attribution::default()
        },
    };
    let recorded = super::record(pool, &click, now).await?;
    Ok(Followed::Redirect {
        destination,
        first: recorded.created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_names_its_message_and_nothing_else() {
        let id = Uuid::new_v4();
        let expires = DateTime::from_timestamp(1_900_000_000, 0).expect("a time");
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let link = url("https://gw.example/", b"s", id, expires);
        let token = link
            .strip_prefix("https://gw.example/reviews/go/")
            .expect("the path");
        assert_eq!(verify(b"s", token, now), Ok(id));
        assert_eq!(verify(b"other", token, now), Err(LinkError::Forged));
        assert_eq!(verify(b"s", token, expires), Err(LinkError::Expired));
        assert!(!link.contains(&id.to_string()));
    }
}
