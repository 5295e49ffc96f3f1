//! The digest worker's own records: revisions, blocks with their owner task, client holds and
//! approvals. A period's row is locked while a revision is recorded, so two builds of one period
//! (replicas, a replayed job) decide one after the other and the second finds the first's result.

use chrono::{DateTime, Utc};
use comms_sender::render::Rendered;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::build::Built;
use super::facts::Facts;
use crate::job::ReportJob;

/// A build's result, before it is recorded.
#[derive(Debug, Clone)]
pub struct Draft {
    pub period_id: Uuid,
    pub report_id: Uuid,
    pub client_id: Uuid,
    pub label: String,
    pub owner: String,
    pub source: String,
    pub built_at: DateTime<Utc>,
    pub facts: serde_json::Value,
    pub blocked: Option<String>,
    pub stale_caveat: bool,
    pub email: Option<Rendered>,
    pub portal: Option<Rendered>,
    pub content_hash: String,
}

impl Draft {
    pub fn new(facts: &Facts, job: &ReportJob, now: DateTime<Utc>) -> Self {
        let p = &facts.period;
        Self {
            period_id: p.id,
            report_id: p.report_id,
            client_id: p.client_id,
            label: format!(
                "{}, {} ({} to {})",
                p.client_name, p.title, p.starts_on, p.ends_on
            ),
            owner: job.owner.trim().to_string(),
            source: job.source.trim().to_string(),
            built_at: now,
            facts: serde_json::Value::Null,
            blocked: None,
            stale_caveat: false,
            email: None,
            portal: None,
            content_hash: String::new(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct Latest {
    id: Uuid,
    revision: i32,
    state: String,
    content_hash: String,
    blocked_reason: Option<String>,
    task_id: Option<Uuid>,
}

/// The client's open hold, if its digests are held.
pub async fn open_hold(pool: &PgPool, client_id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM comms.digest_holds WHERE client_id = $1 AND released_at IS NULL",
    )
    .bind(client_id)
    .fetch_optional(pool)
    .await
}

async fn lock_latest(
    tx: &mut PgConnection,
    period_id: Uuid,
) -> Result<Option<Latest>, sqlx::Error> {
    sqlx::query("SELECT 1 FROM comms.report_periods WHERE id = $1 FOR UPDATE")
        .bind(period_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query_as(
        "SELECT id, revision, state, content_hash, blocked_reason, task_id FROM comms.digests
         WHERE period_id = $1 ORDER BY revision DESC LIMIT 1",
    )
    .bind(period_id)
    .fetch_optional(&mut *tx)
    .await
}

/// Opens an owner task about the digest's report.
async fn task(
    tx: &mut PgConnection,
    draft: &Draft,
    title: String,
    next_action: &str,
    reason: Option<&str>,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO comms.tasks (owner, title, next_action, reason, due_at, record_type, record_id)
         VALUES ($1, $2, $3, $4, $5 + interval '2 days', 'report', $6) RETURNING id",
    )
    .bind(&draft.owner)
    .bind(title)
    .bind(next_action)
    .bind(reason)
    .bind(draft.built_at)
    .bind(draft.report_id)
    .fetch_one(&mut *tx)
    .await
}

/// Supersedes the latest revision (closing its task) unless it already went out.
async fn supersede(tx: &mut PgConnection, latest: &Latest) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE comms.digests SET state = 'superseded' WHERE id = $1")
        .bind(latest.id)
        .execute(&mut *tx)
        .await?;
    if let Some(task) = latest.task_id {
        sqlx::query(
            "UPDATE comms.tasks SET state = 'cancelled', done_at = now(), done_by = 'comms-digest'
             WHERE id = $1 AND state = 'open'",
        )
        .bind(task)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn insert(
    tx: &mut PgConnection,
    draft: &Draft,
    revision: i32,
    state: &str,
    task_id: Uuid,
) -> Result<Uuid, sqlx::Error> {
    let (e, p) = (draft.email.as_ref(), draft.portal.as_ref());
    sqlx::query_scalar(
        "INSERT INTO comms.digests (period_id, revision, client_id, owner, source, state,
             blocked_reason, facts, stale_caveat, email_template, email_subject, email_body,
             portal_template, portal_subject, portal_body, content_hash, task_id, built_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         RETURNING id",
    )
    .bind(draft.period_id)
    .bind(revision)
    .bind(draft.client_id)
    .bind(&draft.owner)
    .bind(&draft.source)
    .bind(state)
    .bind(draft.blocked.as_deref())
    .bind(&draft.facts)
    .bind(draft.stale_caveat)
    .bind(e.map(|r| r.template_version))
    .bind(e.and_then(|r| r.subject.clone()))
    .bind(e.map(|r| r.body.clone()))
    .bind(p.map(|r| r.template_version))
    .bind(p.and_then(|r| r.subject.clone()))
    .bind(p.map(|r| r.body.clone()))
    .bind(&draft.content_hash)
    .bind(task_id)
    .bind(draft.built_at)
    .fetch_one(&mut *tx)
    .await
}

/// Records a blocked build (once per reason), its task and, for `hold`, the client's hold.
pub async fn record_blocked(
    pool: &PgPool,
    draft: Draft,
    hold: bool,
) -> Result<Built, super::build::BuildError> {
    let reason = draft.blocked.clone().unwrap_or_default();
    let mut tx = pool.begin().await?;
    let latest = lock_latest(&mut tx, draft.period_id).await?;
    if let Some(l) = &latest {
        if l.state == "published"
            || (l.state == "blocked" && l.blocked_reason.as_deref() == Some(&reason))
        {
            return Ok(Built::Unchanged {
                digest_id: l.id,
                state: l.state.clone(),
            });
        }
        supersede(&mut tx, l).await?;
    }
    let code = reason.split(':').next().unwrap_or("blocked");
    let next_action = if hold {
        "verify the revenue source (or remove the figure), then release the client's digests: `commsctl digest release --client <id>`"
    } else {
        "fix the cause (approve the stale-data caveat or the templates, or update the figures), then rebuild: `commsctl digest build --period <id>`"
    };
    let task_id = task(
        &mut tx,
        &draft,
        format!("Digest blocked ({code}): {}", draft.label),
        next_action,
        Some(&reason),
    )
    .await?;
    let revision = latest.as_ref().map_or(1, |l| l.revision + 1);
    let digest_id = insert(&mut tx, &draft, revision, "blocked", task_id).await?;
    if hold {
        sqlx::query(
            "INSERT INTO comms.digest_holds (client_id, reason, digest_id, task_id, held_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (client_id) WHERE released_at IS NULL DO NOTHING",
        )
        .bind(draft.client_id)
        .bind(&reason)
        .bind(digest_id)
        .bind(task_id)
        .bind(draft.built_at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(digest.id = %digest_id, reason = code, held = hold, "digest blocked");
    Ok(Built::Blocked { digest_id, reason })
}

/// Records a rendered build: unchanged if it matches the latest revision, else a new revision
/// waiting for the owner's approval.
pub async fn record_draft(pool: &PgPool, draft: Draft) -> Result<Built, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let latest = lock_latest(&mut tx, draft.period_id).await?;
    if let Some(l) = &latest {
        let same =
            l.content_hash == draft.content_hash && l.state != "blocked" && l.state != "superseded";
        if same || l.state == "published" {
            if !same {
                tracing::warn!(digest.id = %l.id, "the period's digest was published; a changed build is not sent (published digests are final)");
            }
            return Ok(Built::Unchanged {
                digest_id: l.id,
                state: l.state.clone(),
            });
        }
        supersede(&mut tx, l).await?;
    }
    let task_id = task(
        &mut tx,
        &draft,
        format!("Digest waits for your approval: {}", draft.label),
        "read it with `commsctl digest show <period>`, then `commsctl digest approve <digest id>`",
        None,
    )
    .await?;
    let revision = latest.as_ref().map_or(1, |l| l.revision + 1);
    let digest_id = insert(&mut tx, &draft, revision, "awaiting_approval", task_id).await?;
    tx.commit().await?;
    Ok(Built::AwaitingApproval { digest_id })
}
