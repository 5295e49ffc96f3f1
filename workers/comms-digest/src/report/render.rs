//! Rendering a digest exactly as the sender will: the same strict renderer over the same pinned,
//! approved template versions, and the sender's portal-safe check, so what the owner approves is
//! byte for byte what goes out.

use comms_domain::contract::{Kind, parse_send_request};
use comms_sender::portal_safe::{self, Wording};
use comms_sender::render::{self, Rendered};
use serde_json::json;
use sqlx::PgPool;

/// One channel's rendering.
#[derive(Debug, Clone)]
pub struct Channel {
    pub template: String,
    pub rendered: Rendered,
}

/// Why a digest cannot be rendered: the reason code and a detail for the owner.
#[derive(Debug, Clone)]
pub struct Refused {
    pub code: String,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderFailure {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{}: {}", .0.code, .0.detail)]
    Refused(Refused),
}

fn refused(code: impl Into<String>, detail: impl Into<String>) -> RenderFailure {
    RenderFailure::Refused(Refused {
        code: code.into(),
        detail: detail.into(),
    })
}

/// Renders `template` (latest approved version) for `channel` with `vars`, then checks portal
/// safety as the sender would for a `report_digest`.
pub async fn render(
    pool: &PgPool,
    channel: &str,
    template: &str,
    vars: &serde_json::Value,
    max_chars: usize,
) -> Result<Channel, RenderFailure> {
    // A stand-in request, only to reuse the sender's renderer and checks on exactly its input.
    let request = json!({
        "idempotency_key": "digest-render",
        "channel": channel,
        "kind": "report_digest",
        "recipient": { "contact_id": uuid::Uuid::nil() },
        "template": { "name": template, "vars": vars },
        "record": { "type": "report", "id": uuid::Uuid::nil() },
        "owner": "digest", "source": "digest", "trigger": "digest.report",
    });
    let bytes = serde_json::to_vec(&request).unwrap_or_default();
    let request = parse_send_request(&bytes).map_err(|e| refused("invalid_vars", e.to_string()))?;
    let rendered = comms_sender::render_request(pool, &request)
        .await
        .map_err(|e| match e {
            render::RenderError::Db(db) => RenderFailure::Db(db),
            other => refused(other.code(), other.to_string()),
        })?;
    let problems = portal_safe::check(
        &Wording {
            kind: Kind::ReportDigest,
            contains_roi: false,
            subject: rendered.subject.as_deref(),
            body: &rendered.body,
        },
        max_chars,
    );
    if !problems.is_empty() {
        let codes: Vec<String> = problems
            .iter()
            .map(|p| format!("{} ({})", p.code, p.detail))
            .collect();
        return Err(refused(
            "portal_unsafe",
            format!("{channel} digest: {}", codes.join("; ")),
        ));
    }
    Ok(Channel {
        template: template.to_string(),
        rendered,
    })
}

/// The approved stale-data caveat wording, if a version is approved.
pub async fn stale_caveat(pool: &PgPool, template: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT body FROM comms.templates WHERE name = $1 AND state = 'approved'
         ORDER BY version DESC LIMIT 1",
    )
    .bind(template)
    .fetch_optional(pool)
    .await
}
