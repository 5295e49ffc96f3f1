//! Who an incident event names, resolved against the database: its clients, and the client of
//! each project it names. The incident worker applies it inside the event's transaction; `commsctl
//! incident` and the admin API run the same check before they publish, so an event naming an
//! unknown client is refused to the operator instead of being dead-lettered behind their back.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::event::Affected;
use super::ops::IncidentError;

/// The affected clients, each with the project it came through; or the ids that do not exist.
pub async fn resolve_affected(
    conn: &mut PgConnection,
    affected: &Affected,
) -> Result<Result<Vec<(Uuid, Option<Uuid>)>, String>, sqlx::Error> {
    let clients: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM comms.clients WHERE id = ANY($1)")
        .bind(&affected.clients)
        .fetch_all(&mut *conn)
        .await?;
    let projects: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT id, client_id FROM comms.projects WHERE id = ANY($1)")
            .bind(&affected.projects)
            .fetch_all(&mut *conn)
            .await?;
    let mut unknown: Vec<String> = affected
        .clients
        .iter()
        .filter(|id| !clients.contains(id))
        .map(|id| format!("client {id}"))
        .collect();
    unknown.extend(
        affected
            .projects
            .iter()
            .filter(|id| !projects.iter().any(|(p, _)| p == *id))
            .map(|id| format!("project {id}")),
    );
    if !unknown.is_empty() {
        return Ok(Err(unknown.join(", ")));
    }
    let mut out: Vec<(Uuid, Option<Uuid>)> = clients.into_iter().map(|c| (c, None)).collect();
    for (project, client) in projects {
        if !out.iter().any(|(c, _)| *c == client) {
            out.push((client, Some(project)));
        }
    }
    out.sort();
    Ok(Ok(out))
}

/// Refuses an event that names a client or project the database does not know.
pub async fn check_affected(pool: &PgPool, affected: &Affected) -> Result<(), IncidentError> {
    let mut conn = pool.acquire().await?;
    match resolve_affected(&mut conn, affected).await? {
        Ok(_) => Ok(()),
        Err(unknown) => Err(IncidentError::UnknownAffected(unknown)),
    }
}
