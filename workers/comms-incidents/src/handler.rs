//! What the worker does with one incident event: record it once and in order, link the affected
//! clients, pause them while the facts are not verified (with a task for the owner), and queue
//! the notice once they are. Sending is left to the fan-out ([`crate::fanout`]).

use std::sync::Arc;

use comms_domain::incidents::affected;
use comms_domain::pause::store::{self as pause_store, IncidentPause};
use comms_runtime::runtime::{Handler, Incoming, Outcome};
use comms_runtime::settings::Settings;
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::event::{self, EventType, IncidentEvent};
use crate::{ACTOR, metrics, store};

pub(crate) struct IncidentHandler {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    /// Wakes the fan-out as soon as a notice is queued.
    pub wake: Arc<Notify>,
}

impl Handler for IncidentHandler {
    async fn handle(&self, incoming: &Incoming) -> Outcome {
        let (kind, event) = match event::parse(&incoming.routing_key, &incoming.body) {
            Ok(parsed) => parsed,
            Err(error) => return Outcome::reject(error.to_string()),
        };
        match self.apply(kind, &event).await {
            Ok(outcome) => outcome,
            Err(error) => Outcome::retry(format!("database unavailable: {error}")),
        }
    }
}

impl IncidentHandler {
    async fn apply(&self, kind: EventType, event: &IncidentEvent) -> Result<Outcome, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let latest = store::lock_incident(&mut tx, event).await?;
        if event.sequence < latest {
            tracing::info!(incident.id = %event.incident_id, event.sequence = event.sequence, incident.sequence = latest, "older incident event: changes nothing");
            metrics::events(kind, "older");
            return Ok(Outcome::Ack);
        }
        let clients = match affected::resolve_affected(&mut tx, &event.affected).await? {
            Ok(clients) => clients,
            Err(unknown) => {
                return Ok(Outcome::reject(format!(
                    "unknown_affected: no client or project {unknown}"
                )));
            }
        };
        if event.sequence > latest {
            store::record_event(&mut tx, kind, event, &clients).await?;
        }
        tx.commit().await?;
        // The effects below are idempotent: a redelivery of the latest event (say after a crash
        // right here) completes them, and changes nothing once they are done.
        if event.sequence == latest {
            metrics::events(kind, "replayed");
        } else {
            metrics::events(kind, "accepted");
        }
        if event.facts_verified {
            self.facts_verified(kind, event).await?;
        } else {
            self.unverified(event, &clients).await?;
        }
        if kind == EventType::Resolved {
            store::resolved(&self.pool, event).await?;
        }
        Ok(Outcome::Ack)
    }

    /// Pauses every affected client and asks the owner to verify the facts; no notice.
    async fn unverified(
        &self,
        event: &IncidentEvent,
        clients: &[(Uuid, Option<Uuid>)],
    ) -> Result<(), sqlx::Error> {
        let reason = format!(
            "incident {} ({}): facts not verified; automation paused until its owner resumes it",
            event.incident_id,
            event.severity.as_str()
        );
        for (client, _) in clients {
            match pause_store::pause_for_incident(
                &self.pool,
                *client,
                event.incident_id,
                &reason,
                ACTOR,
            )
            .await
            {
                Ok(IncidentPause::Paused(pause)) => {
                    store::log(
                        &self.pool,
                        event.incident_id,
                        "client_paused",
                        ACTOR,
                        serde_json::json!({"client_id": client, "pause_id": pause.id}),
                    )
                    .await?;
                }
                Ok(IncidentPause::AlreadyOn(pause))
                    if pause.incident != Some(event.incident_id) =>
                {
                    store::log(&self.pool, event.incident_id, "client_already_paused", ACTOR,
                        serde_json::json!({"client_id": client, "pause_id": pause.id, "by": pause.actor})).await?;
                }
                Ok(IncidentPause::AlreadyOn(_)) => {}
                Err(pause_store::PauseError::Db(error)) => return Err(error),
                Err(other) => tracing::error!(error = %other, "incident pause refused"),
            }
        }
        store::mark_paused(&self.pool, event).await
    }

    /// Closes the verify task and queues this sequence's notice.
    async fn facts_verified(
        &self,
        kind: EventType,
        event: &IncidentEvent,
    ) -> Result<(), sqlx::Error> {
        store::close_verify_task(&self.pool, event.incident_id).await?;
        let incidents = &self.settings.incidents;
        let (purpose, default) = if kind == EventType::Resolved {
            ("resolution", incidents.resolution_template.as_str())
        } else {
            ("update", incidents.default_template.as_str())
        };
        let resolution = kind == EventType::Resolved;
        let template = store::notice_template(&self.pool, event, default, resolution).await?;
        let queued = store::queue_notice(
            &self.pool,
            event,
            purpose,
            &template,
            &incidents.preapproved(),
        )
        .await?;
        if queued {
            self.wake.notify_one();
        }
        Ok(())
    }
}
