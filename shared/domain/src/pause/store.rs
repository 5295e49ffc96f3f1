//! The stored pause switch and its history.
//!
//! `comms.pauses` holds the scopes that are on; `comms.pause_events` is the append-only record of
//! every pause, resume, extension and expiry. Each change commits together with its event and a
//! `NOTIFY comms_pause` whose payload is JSON: `at`, the commit-side time in milliseconds (so
//! workers can measure how long applying took) and, for a pause or an extension, `pause`, the
//! pause itself (so workers stop dispatches it covers before they have even re-read the switch).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{ActivePause, NOTIFY_CHANNEL, Scope};

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("a reason is required")]
    NoReason,
    #[error("an actor is required")]
    NoActor,
    #[error("nothing is paused at scope {0}")]
    NotPaused(Scope),
    /// An incident's pause (its facts not verified) is lifted only by the incident's recorded
    /// decision, never by an ordinary resume.
    #[error(
        "{scope} is paused by incident {incident} until its facts are verified; only its owner or a delegate lifts it: commsctl incident resume-automation {incident} --by OWNER"
    )]
    HeldByIncident { scope: Scope, incident: Uuid },
    /// An expiry that has passed already (`--for 0s`) or is more than a year away.
    #[error("the pause's length (--for, `for`) must be above zero and at most a year")]
    InvalidExpiry,
    /// A client or sequence the fleet does not know: a typo must not look like a working pause.
    #[error("{0} names no known client or sequence: nothing was paused")]
    UnknownTarget(Scope),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    scope: String,
    scope_value: String,
    reason: String,
    actor: String,
    automatic: bool,
    started_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    incident_id: Option<Uuid>,
}

impl Row {
    fn into_pause(self) -> Option<ActivePause> {
        Some(ActivePause {
            scope: Scope::from_parts(&self.scope, &self.scope_value)?,
            id: self.id,
            reason: self.reason,
            actor: self.actor,
            automatic: self.automatic,
            started_at: self.started_at,
            expires_at: self.expires_at,
            incident: self.incident_id,
        })
    }
}

/// What a pause request asks for.
#[derive(Debug, Clone)]
pub struct PauseRequest {
    pub scope: Scope,
    pub reason: String,
    pub actor: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub automatic: bool,
}

/// Turns a scope on (or, if it is already on, records the new reason and expiry as an extension).
pub async fn pause(pool: &PgPool, request: &PauseRequest) -> Result<ActivePause, PauseError> {
    if request.reason.trim().is_empty() {
        return Err(PauseError::NoReason);
    }
    if request.actor.trim().is_empty() {
        return Err(PauseError::NoActor);
    }
    // An operator's length is checked; the circuit breaker's comes from its own setting.
    if let Some(expires_at) = request.expires_at.filter(|_| !request.automatic) {
        let now = Utc::now();
        if expires_at <= now || expires_at > now + chrono::Duration::days(366) {
            return Err(PauseError::InvalidExpiry);
        }
    }
    let mut tx = pool.begin().await?;
    if !target_exists(&mut tx, &request.scope).await? {
        return Err(PauseError::UnknownTarget(request.scope.clone()));
    }
    let existing: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM comms.pauses WHERE scope = $1 AND scope_value = $2 FOR UPDATE",
    )
    .bind(request.scope.name())
    .bind(request.scope.value())
    .fetch_optional(&mut *tx)
    .await?;
    let action = if existing.is_some() {
        "extend"
    } else {
        "pause"
    };
    let row: Row = sqlx::query_as(
        "INSERT INTO comms.pauses (scope, scope_value, reason, actor, automatic, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (scope, scope_value) DO UPDATE
             SET reason = EXCLUDED.reason, actor = EXCLUDED.actor, expires_at = EXCLUDED.expires_at,
                 incident_id = NULL
         RETURNING id, scope, scope_value, reason, actor, automatic, started_at, expires_at, incident_id",
    )
    .bind(request.scope.name())
    .bind(request.scope.value())
    .bind(request.reason.trim())
    .bind(request.actor.trim())
    .bind(request.automatic)
    .bind(request.expires_at)
    .fetch_one(&mut *tx)
    .await?;
    let pause = row
        .into_pause()
        .ok_or(PauseError::Db(sqlx::Error::RowNotFound))?;
    let change = Change {
        pause_id: pause.id,
        action,
        scope: &request.scope,
        reason: &request.reason,
        actor: &request.actor,
        expires_at: request.expires_at,
    };
    record(&mut tx, change, Some(&pause)).await?;
    tx.commit().await?;
    Ok(pause)
}

/// How [`pause_for_incident`] found the client scope.
#[derive(Debug, Clone)]
pub enum IncidentPause {
    /// The scope was off: the incident turned it on.
    Paused(ActivePause),
    /// The scope was already on (on-call, the breaker or another incident): left as it was.
    AlreadyOn(ActivePause),
}

/// Whether the client or sequence a scope names exists (other scopes name no row).
async fn target_exists(
    tx: &mut Transaction<'_, Postgres>,
    scope: &Scope,
) -> Result<bool, sqlx::Error> {
    let exists = match scope {
        Scope::Client(id) => {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM comms.clients WHERE id = $1)")
                .bind(id)
                .fetch_one(&mut **tx)
                .await?
        }
        Scope::Sequence(name) => {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM comms.sequences WHERE name = $1)")
                .bind(name)
                .fetch_one(&mut **tx)
                .await?
        }
        Scope::Global | Scope::Channel(_) | Scope::Kind(_) => true,
    };
    Ok(exists)
}

/// Turns a client scope on for an incident whose facts are not verified, recording the incident
/// on the pause so that its own notices pass it. A scope already on is left exactly as it is
/// (its owner, reason and expiry stay), so an incident never takes over someone else's pause.
pub async fn pause_for_incident(
    pool: &PgPool,
    client: Uuid,
    incident: Uuid,
    reason: &str,
    actor: &str,
) -> Result<IncidentPause, PauseError> {
    if reason.trim().is_empty() {
        return Err(PauseError::NoReason);
    }
    let scope = Scope::Client(client);
    let mut tx = pool.begin().await?;
    let inserted: Option<Row> = sqlx::query_as(
        "INSERT INTO comms.pauses (scope, scope_value, reason, actor, automatic, incident_id)
         VALUES ('client', $1, $2, $3, true, $4)
         ON CONFLICT (scope, scope_value) DO NOTHING
         RETURNING id, scope, scope_value, reason, actor, automatic, started_at, expires_at, incident_id",
    )
    .bind(scope.value())
    .bind(reason.trim())
    .bind(actor.trim())
    .bind(incident)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = inserted else {
        let row: Row = sqlx::query_as(
            "SELECT id, scope, scope_value, reason, actor, automatic, started_at, expires_at, incident_id
             FROM comms.pauses WHERE scope = 'client' AND scope_value = $1",
        )
        .bind(scope.value())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let pause = row
            .into_pause()
            .ok_or(PauseError::Db(sqlx::Error::RowNotFound))?;
        return Ok(IncidentPause::AlreadyOn(pause));
    };
    let pause = row
        .into_pause()
        .ok_or(PauseError::Db(sqlx::Error::RowNotFound))?;
    let change = Change {
        pause_id: pause.id,
        action: "pause",
        scope: &scope,
        reason,
        actor,
        expires_at: None,
    };
    record(&mut tx, change, Some(&pause)).await?;
    tx.commit().await?;
    Ok(IncidentPause::Paused(pause))
}

/// Turns a scope off. Held messages are then released by [`super::release`]. A pause an incident
/// holds is refused ([`PauseError::HeldByIncident`]): [`resume_for_incident`] lifts it.
pub async fn resume(
    pool: &PgPool,
    scope: &Scope,
    reason: &str,
    actor: &str,
) -> Result<ActivePause, PauseError> {
    end(pool, scope, None, reason, actor).await
}

/// Turns off `scope`'s pause held by `incident`: the incident's recorded decision
/// (`commsctl incident resume-automation`), the only way such a pause is lifted.
pub async fn resume_for_incident(
    pool: &PgPool,
    scope: &Scope,
    incident: Uuid,
    reason: &str,
    actor: &str,
) -> Result<ActivePause, PauseError> {
    end(pool, scope, Some(incident), reason, actor).await
}

/// Deletes the pause of `scope` held by `incident` (`None`: by no incident) and records its end.
async fn end(
    pool: &PgPool,
    scope: &Scope,
    incident: Option<Uuid>,
    reason: &str,
    actor: &str,
) -> Result<ActivePause, PauseError> {
    if reason.trim().is_empty() {
        return Err(PauseError::NoReason);
    }
    let mut tx = pool.begin().await?;
    let row: Option<Row> = sqlx::query_as(
        "DELETE FROM comms.pauses
         WHERE scope = $1 AND scope_value = $2 AND incident_id IS NOT DISTINCT FROM $3
         RETURNING id, scope, scope_value, reason, actor, automatic, started_at, expires_at, incident_id",
    )
    .bind(scope.name())
    .bind(scope.value())
    .bind(incident)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        let held_by: Option<Option<Uuid>> = sqlx::query_scalar(
            "SELECT incident_id FROM comms.pauses WHERE scope = $1 AND scope_value = $2",
        )
        .bind(scope.name())
        .bind(scope.value())
        .fetch_optional(&mut *tx)
        .await?;
        return Err(match held_by {
            Some(Some(other)) if incident.is_none() => PauseError::HeldByIncident {
                scope: scope.clone(),
                incident: other,
            },
            _ => PauseError::NotPaused(scope.clone()),
        });
    };
    let change = Change {
        pause_id: row.id,
        action: "resume",
        scope,
        reason,
        actor,
        expires_at: None,
    };
    record(&mut tx, change, None).await?;
    tx.commit().await?;
    row.into_pause()
        .ok_or(PauseError::Db(sqlx::Error::RowNotFound))
}

/// Ends every pause whose expiry has passed, recording each expiry. Returns how many ended.
pub async fn expire_due(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows: Vec<Row> = sqlx::query_as(
        "DELETE FROM comms.pauses WHERE expires_at IS NOT NULL AND expires_at <= now()
         RETURNING id, scope, scope_value, reason, actor, automatic, started_at, expires_at, incident_id",
    )
    .fetch_all(&mut *tx)
    .await?;
    for row in &rows {
        if let Some(scope) = Scope::from_parts(&row.scope, &row.scope_value) {
            let reason = format!("expired (was: {})", row.reason);
            let change = Change {
                pause_id: row.id,
                action: "expire",
                scope: &scope,
                reason: &reason,
                actor: "comms-fleet",
                expires_at: row.expires_at,
            };
            record(&mut tx, change, None).await?;
        }
    }
    tx.commit().await?;
    Ok(rows.len())
}

/// The scopes on now (expired ones excluded even before the sweeper records them).
pub async fn active<'e>(
    executor: impl sqlx::PgExecutor<'e>,
) -> Result<Vec<ActivePause>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, scope, scope_value, reason, actor, automatic, started_at, expires_at, incident_id
         FROM comms.pauses WHERE expires_at IS NULL OR expires_at > now() ORDER BY started_at",
    )
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().filter_map(Row::into_pause).collect())
}

/// One change of the switch, as its event records it.
struct Change<'a> {
    pause_id: Uuid,
    action: &'a str,
    scope: &'a Scope,
    reason: &'a str,
    actor: &'a str,
    expires_at: Option<DateTime<Utc>>,
}

/// Notification payloads stay well under PostgreSQL's 8000-byte limit; a pause too large to
/// announce (a very long reason) is announced without itself, and workers re-read it instead.
const MAX_ANNOUNCED_BYTES: usize = 6000;

/// Appends the change's event and announces it with `NOTIFY comms_pause` (see the module docs).
async fn record(
    tx: &mut Transaction<'_, Postgres>,
    change: Change<'_>,
    announced: Option<&ActivePause>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO comms.pause_events (pause_id, action, scope, scope_value, reason, actor, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(change.pause_id)
    .bind(change.action)
    .bind(change.scope.name())
    .bind(change.scope.value())
    .bind(change.reason.trim())
    .bind(change.actor.trim())
    .bind(change.expires_at)
    .execute(&mut **tx)
    .await?;
    let pause = announced
        .and_then(|pause| serde_json::to_value(pause).ok())
        .filter(|pause| pause.to_string().len() <= MAX_ANNOUNCED_BYTES);
    // `at` is the commit-side clock, so each worker can measure commit-to-apply time.
    sqlx::query(
        "SELECT pg_notify($1, json_build_object(
             'at', (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
             'pause', $2::jsonb)::text)",
    )
    .bind(NOTIFY_CHANNEL)
    .bind(pause)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
