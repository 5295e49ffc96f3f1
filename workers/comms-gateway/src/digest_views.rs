//! Report views: `GET /digests/view/{token}`, the link each recipient of a digest finds in it
//! (template variable `view_url`, docs/digests.md).
//!
//! The token is signed with `digest.view_secret` over exactly what is acted on — the digest, the
//! contact and the expiry (`comms_domain::digests::link`) — and checked before anything in it is
//! believed. A forged or altered link is refused with 403, an expired one with 410, and neither is
//! recorded as a view. A genuine link records a row in `comms.digest_views` (every opening); the
//! contact's first view of the digest is marked `first`, at most once (a unique index), and that
//! one is the "report viewed" outcome: the `digest.viewed` lifecycle event and
//! `comms_gateway_digest_views_total{outcome="first"}`. Then the digest's portal wording is shown.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use comms_domain::digests::link::{self, LinkError, ViewLink};
use secrecy::ExposeSecret;

use crate::metrics::gateway as metrics;
use crate::reply;
use crate::state::GatewayState;

/// What the page shows: the digest's portal wording and what it is about.
#[derive(sqlx::FromRow)]
struct Shown {
    client_name: String,
    report_title: String,
    portal_subject: Option<String>,
    portal_body: Option<String>,
}

fn count(outcome: &str) {
    metrics().digest_views.with_label_values(&[outcome]).inc();
}

/// `GET /digests/view/{token}`
pub async fn view(State(state): State<GatewayState>, Path(token): Path<String>) -> Response {
    let inner = state.inner();
    let secret = inner.settings.digest.view_secret.expose_secret().as_bytes();
    let link = match link::verify(secret, &token, Utc::now()) {
        Ok(link) => link,
        Err(LinkError::Forged) => {
            count("forged");
            return reply::error(
                StatusCode::FORBIDDEN,
                "invalid_link",
                "this report link is not valid; use the link from your digest as it was sent",
            );
        }
        Err(LinkError::Expired) => {
            count("expired");
            return reply::error(
                StatusCode::GONE,
                "link_expired",
                "this report link has expired; the report is in your client portal",
            );
        }
    };
    match record(&inner.pool, &link).await {
        Ok(Some((first, shown))) => {
            count(if first { "first" } else { "repeat" });
            if first {
                tracing::info!(digest.id = %link.digest_id, contact.id = %link.contact_id, "report viewed");
            }
            page(&shown, &token)
        }
        Ok(None) => {
            count("unknown");
            reply::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "this report is no longer available",
            )
        }
        Err(error) => {
            count("unavailable");
            tracing::warn!(%error, digest.id = %link.digest_id, "a report view could not be recorded");
            reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the report cannot be shown right now; please try again",
            )
        }
    }
}

/// Records one view of `link` (the first per contact and digest marked so); `None` when the
/// digest or the contact no longer exists. Returns whether it was the first, and the page.
async fn record(
    pool: &sqlx::PgPool,
    link: &ViewLink,
) -> Result<Option<(bool, Shown)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let shown: Option<Shown> = sqlx::query_as(
        "SELECT c.name AS client_name, r.title AS report_title, d.portal_subject, d.portal_body
         FROM comms.digests d
         JOIN comms.clients c ON c.id = d.client_id
         JOIN comms.report_periods p ON p.id = d.period_id
         JOIN comms.reports r ON r.id = p.report_id
         WHERE d.id = $1 AND EXISTS (SELECT 1 FROM comms.contacts k WHERE k.id = $2)",
    )
    .bind(link.digest_id)
    .bind(link.contact_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(shown) = shown else {
        return Ok(None);
    };
    let first: Option<i64> = sqlx::query_scalar(
        "INSERT INTO comms.digest_views (digest_id, contact_id, first) VALUES ($1, $2, true)
         ON CONFLICT (digest_id, contact_id) WHERE first DO NOTHING RETURNING id",
    )
    .bind(link.digest_id)
    .bind(link.contact_id)
    .fetch_optional(&mut *tx)
    .await?;
    if first.is_none() {
        sqlx::query(
            "INSERT INTO comms.digest_views (digest_id, contact_id, first) VALUES ($1, $2, false)",
        )
        .bind(link.digest_id)
        .bind(link.contact_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Some((first.is_some(), shown)))
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The digest's portal wording as a page; the link's token never leaves it as a referrer.
fn page(shown: &Shown, token: &str) -> Response {
    let own = format!("{}{token}", link::PATH);
    let body = shown
        .portal_body
        .as_deref()
        .unwrap_or_default()
        .replace(link::PLACEHOLDER, &own);
    let title = shown
        .portal_subject
        .clone()
        .unwrap_or_else(|| shown.report_title.clone());
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>{title}</title>\
         <h1>{title}</h1><p>{client}</p><pre style=\"white-space: pre-wrap\">{body}</pre>",
        title = escape(&title),
        client = escape(&shown.client_name),
        body = escape(&body),
    );
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
