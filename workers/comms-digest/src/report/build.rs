//! Building a digest for one period, and carrying an approved one on to the sender.
//!
//! Every build reads the facts again and renders them. The outcome is decided in this order, so a
//! digest never goes out with what it must not say:
//! 1. an open hold on the client (an earlier unverified revenue figure): nothing is built;
//! 2. an ROI or revenue figure without a verified source: the digest is blocked, the owner gets a
//!    task, and the client's digests are held until the owner releases them;
//! 3. stale figures: the approved caveat wording goes in, or the digest is blocked without one;
//! 4. rendering (approved templates) and the portal-safe check: a failure blocks with its reason;
//! 5. the content hash against the period's latest revision: the same content is the same
//!    revision (a rebuild changes nothing); other content is a new revision waiting for approval;
//! 6. an approved revision is published: one send request per contact and channel.

use chrono::{DateTime, Utc};
use comms_domain::approvals::approval_hash;
use comms_runtime::amqp::Publisher;
use comms_runtime::runtime::Runtime;
use serde_json::json;
use uuid::Uuid;

use super::facts::{self, Facts};
use super::publish;
use super::render::{self, RenderFailure};
use super::store::{self, Draft};
use crate::job::ReportJob;

/// What one build did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Built {
    /// The client's digests are held until the owner decides.
    Held,
    Blocked {
        digest_id: Uuid,
        reason: String,
    },
    AwaitingApproval {
        digest_id: Uuid,
    },
    /// The same content as the latest revision, which is in `state`.
    Unchanged {
        digest_id: Uuid,
        state: String,
    },
    Published {
        digest_id: Uuid,
        sends: usize,
    },
}

impl Built {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Blocked { .. } => "blocked",
            Self::AwaitingApproval { .. } => "awaiting_approval",
            Self::Unchanged { .. } => "unchanged",
            Self::Published { .. } => "published",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Permanent: the job names no known period.
    #[error("unknown report period {0}")]
    UnknownPeriod(Uuid),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("publish: {0}")]
    Publish(#[from] publish::PublishFailure),
}

pub async fn build(
    runtime: &Runtime,
    publisher: &Publisher,
    job: &ReportJob,
    now: DateTime<Utc>,
) -> Result<Built, BuildError> {
    let pool = &runtime.pool;
    let settings = &runtime.settings.digest;
    let period = facts::period(pool, job.report_period_id)
        .await?
        .ok_or(BuildError::UnknownPeriod(job.report_period_id))?;
    if store::open_hold(pool, period.client_id).await?.is_some() {
        return Ok(Built::Held);
    }
    let facts = facts::gather(pool, period).await?;
    let as_of = facts
        .figures
        .iter()
        .map(|f| f.as_of)
        .max()
        .unwrap_or_else(|| day_end(&facts));
    let mut draft = Draft::new(&facts, job, now);
    if !facts.unverified.is_empty() {
        draft.blocked = Some(format!(
            "revenue_unverified: no verified source for {}",
            facts.unverified.join(", ")
        ));
        draft.facts = json!({ "unverified": facts.unverified });
        return store::record_blocked(pool, draft, true).await;
    }
    let mut caveat = None;
    if let Some(oldest) = facts.stale_since(now, settings.freshness) {
        match render::stale_caveat(pool, &settings.stale_caveat_template).await? {
            Some(text) => caveat = Some(text),
            None => {
                draft.blocked = Some(format!(
                    "stale_without_caveat: figures as of {} are older than {} and no `{}` caveat is approved",
                    oldest.format("%Y-%m-%d"),
                    humantime::format_duration(settings.freshness),
                    settings.stale_caveat_template
                ));
                return store::record_blocked(pool, draft, false).await;
            }
        }
    }
    let vars = facts.vars(as_of, caveat.as_deref());
    let max = runtime.settings.approvals.portal_max_chars;
    let email = render::render(pool, "email", &settings.email_template, &vars, max).await;
    let portal = render::render(pool, "portal", &settings.portal_template, &vars, max).await;
    let (email, portal) = match (email, portal) {
        (Ok(e), Ok(p)) => (e, p),
        (Err(RenderFailure::Db(db)), _) | (_, Err(RenderFailure::Db(db))) => return Err(db.into()),
        (Err(RenderFailure::Refused(r)), _) | (_, Err(RenderFailure::Refused(r))) => {
            draft.blocked = Some(format!("{}: {}", r.code, r.detail));
            return store::record_blocked(pool, draft, false).await;
        }
    };
    let email_hash = approval_hash(email.rendered.subject.as_deref(), &email.rendered.body);
    let portal_hash = approval_hash(portal.rendered.subject.as_deref(), &portal.rendered.body);
    draft.content_hash = approval_hash(Some(&email_hash), &portal_hash);
    draft.stale_caveat = caveat.is_some();
    draft.facts = vars;
    draft.email = Some(email.rendered);
    draft.portal = Some(portal.rendered);
    let recorded = store::record_draft(pool, draft).await?;
    match recorded {
        Built::Unchanged {
            digest_id,
            ref state,
        } if state == "approved" => {
            let sends = publish::publish(runtime, publisher, digest_id, now).await?;
            Ok(Built::Published { digest_id, sends })
        }
        other => Ok(other),
    }
}

/// The end of the period, when no figure says how current the data is.
fn day_end(facts: &Facts) -> DateTime<Utc> {
    facts
        .period
        .ends_on
        .and_hms_opt(23, 59, 59)
        .map(|t| t.and_utc())
        .unwrap_or_default()
}
