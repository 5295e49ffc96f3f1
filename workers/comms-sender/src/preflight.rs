//! The checks a message must pass before it may be dispatched, each failing with a named reason.
//!
//! They run on every delivery, not only the first, because the world changes while a message
//! waits: a contact opts out, an approval arrives, a record is deleted.

use comms_domain::contract::{Channel, Kind, RecordType, ValidSendRequest};
use sqlx::PgPool;
use uuid::Uuid;

use crate::render::Rendered;
use crate::store::Message;

/// The fingerprint an approval covers; shared with the approval workflow so both hash alike.
pub use comms_domain::approvals::approval_hash;

/// A failed check: the reason code, a sentence for the timeline, and what the owner should do.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: &'static str,
    pub detail: String,
    pub next_action: &'static str,
}

/// Looks the attached record up; returns the client the message belongs to, or a refusal.
///
/// That is the record's client, except for an incident: one incident affects many clients, so a
/// message attached to it belongs to its recipient contact's client (the incident's own
/// `client_id`, its first client, only when the contact belongs to none). Client-scoped pauses
/// and `portal.delivery_status` then see each affected client's own messages.
pub async fn record_client(
    pool: &PgPool,
    request: &ValidSendRequest,
    contact_id: Uuid,
) -> Result<Result<Option<Uuid>, Refusal>, sqlx::Error> {
    let id = request.record.id;
    let sql = match request.record.record_type {
        RecordType::Client => "SELECT id FROM comms.clients WHERE id = $1",
        RecordType::Lead => "SELECT client_id FROM comms.leads WHERE id = $1",
        RecordType::Project => "SELECT client_id FROM comms.projects WHERE id = $1",
        RecordType::Report => "SELECT client_id FROM comms.reports WHERE id = $1",
        RecordType::Incident => {
            "SELECT COALESCE((SELECT client_id FROM comms.contacts WHERE id = $2), client_id)
             FROM comms.incidents WHERE id = $1"
        }
        RecordType::Approval => "SELECT client_id FROM comms.approvals WHERE id = $1",
    };
    let mut query = sqlx::query_scalar(sql).bind(id);
    if request.record.record_type == RecordType::Incident {
        query = query.bind(contact_id);
    }
    let found: Option<Option<Uuid>> = query.fetch_optional(pool).await?;
    Ok(found.ok_or_else(|| Refusal {
        code: "record_not_found",
        detail: format!("{} {id} does not exist", request.record.record_type),
        next_action: "attach the message to an existing record and send it again",
    }))
}

/// Consent on the message's channel: opted-out and suppressed contacts are never sent to, and
/// outreach and review requests need recorded express consent (taken from the request if it
/// carries it, and then kept on the contact).
pub async fn consent(
    pool: &PgPool,
    message: &Message,
    request: &ValidSendRequest,
    opt_out_confirmation: &str,
) -> Result<Result<(), Refusal>, sqlx::Error> {
    let state: Option<String> = sqlx::query_scalar(
        "SELECT consent_state FROM comms.contact_channels WHERE contact_id = $1 AND channel = $2",
    )
    .bind(message.contact_id)
    .bind(&message.channel)
    .fetch_optional(pool)
    .await?;
    let state = state.unwrap_or_else(|| "unknown".into());
    // The one message an opted-out contact still gets: the confirmation of that opt-out.
    let is_confirmation = request.kind == Kind::Transactional
        && request.template.name == opt_out_confirmation
        && message.channel == "sms";
    match state.as_str() {
        "opted_out" if is_confirmation => return Ok(Ok(())),
        "opted_out" => {
            return Ok(Err(Refusal {
                code: "opted_out",
                detail: format!("the contact opted out of {}", message.channel),
                next_action: "do not contact on this channel unless the contact opts back in",
            }));
        }
        "suppressed" => {
            return Ok(Err(Refusal {
                code: "suppressed",
                detail: format!(
                    "the {} address is suppressed (bounce or complaint)",
                    message.channel
                ),
                next_action: "get a working address from the contact",
            }));
        }
        _ => {}
    }
    if !matches!(request.kind, Kind::Outreach | Kind::ReviewRequest) || state == "express" {
        return Ok(Ok(()));
    }
    if let Some(consent) = request
        .consent
        .as_ref()
        .filter(|_| request.has_express_consent())
    {
        sqlx::query(
            "UPDATE comms.contact_channels SET consent_state = 'express', consent_basis = 'express',
                 consent_source = $3, consent_at = $4, updated_at = now()
             WHERE contact_id = $1 AND channel = $2 AND consent_state IN ('unknown', 'implied')",
        )
        .bind(message.contact_id)
        .bind(&message.channel)
        .bind(&consent.source)
        .bind(consent.captured_at)
        .execute(pool)
        .await?;
        return Ok(Ok(()));
    }
    Ok(Err(Refusal {
        code: "consent_missing",
        detail: format!("{} needs recorded express consent", request.kind),
        next_action: "record the contact's express consent, then send again",
    }))
}

/// Whether this message may only go out with a recorded owner approval.
pub fn needs_approval(request: &ValidSendRequest) -> bool {
    request.channel == Channel::Portal
        || request.contains_roi
        || matches!(
            request.kind,
            Kind::PortalUpdate | Kind::IncidentNotice | Kind::ReportDigest | Kind::ApprovalRequest
        )
}

/// A fingerprint of the content an approval covers: change a word and the approval is void.
pub fn content_hash(rendered: &Rendered) -> String {
    approval_hash(rendered.subject.as_deref(), &rendered.body)
}

/// The latest decision of `kind` (`approved`/`rejected`/`expired` or `reviewed_safe`) on exactly
/// this content.
pub async fn decision(
    pool: &PgPool,
    message_id: Uuid,
    hash: &str,
    ai_review: bool,
) -> Result<Option<String>, sqlx::Error> {
    let decisions: &[&str] = if ai_review {
        &["reviewed_safe"]
    } else {
        &["approved", "rejected", "expired"]
    };
    let decisions: Vec<String> = decisions.iter().map(|s| (*s).to_string()).collect();
    sqlx::query_scalar(
        "SELECT decision FROM comms.message_approvals
         WHERE message_id = $1 AND content_hash = $2 AND decision = ANY($3)
         ORDER BY decided_at DESC LIMIT 1",
    )
    .bind(message_id)
    .bind(hash)
    .bind(&decisions)
    .fetch_optional(pool)
    .await
}
