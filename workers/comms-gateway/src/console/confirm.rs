//! The pause confirmation step: before a scope is paused, say in words what will stop and how
//! many messages are on their way in that scope (recorded and not yet final, and waiting in the
//! send queues). It changes nothing; its button posts the same form to `/console/pause`.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use comms_domain::pause::Scope;
use minijinja::context;
use sqlx::PgPool;

use super::pause::{ScopeForm, checked, render};
use super::session::Operator;
use super::view;
use crate::state::GatewayState;

/// What a pause at `scope` stops, in words.
fn what_stops(scope: &Scope) -> String {
    match scope {
        Scope::Global => "All automated sending stops: every channel, kind and client.".into(),
        Scope::Channel(channel) => format!("Every {channel} message stops."),
        Scope::Kind(kind) => format!("Every {kind} message stops, on every channel."),
        Scope::Client(client) => format!("Every message for client {client} stops."),
        Scope::Sequence(name) => format!("Every step of sequence {name} stops."),
    }
}

/// Messages the scope covers that are on their way now (recorded, not yet final or held).
async fn in_flight(pool: &PgPool, scope: &Scope) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM comms.messages
         WHERE delivery_state IN ('received', 'deferred', 'retrying', 'sending')
           AND ($1 = 'global' OR ($1 = 'channel' AND channel = $2) OR ($1 = 'kind' AND kind = $2)
                OR ($1 = 'client' AND client_id::text = $2)
                OR ($1 = 'sequence' AND trigger = 'sequence:' || $2))",
    )
    .bind(scope.name())
    .bind(scope.value())
    .fetch_one(pool)
    .await
}

/// `POST /console/pause/confirm`: the confirmation step (changes nothing).
pub async fn confirm(
    State(state): State<GatewayState>,
    operator: Operator,
    Form(form): Form<ScopeForm>,
) -> Response {
    let (scope, _) = match checked(&form) {
        Ok(checked) => checked,
        Err(problem) => {
            return render(
                &state,
                &operator,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&problem),
            )
            .await;
        }
    };
    let inner = state.inner();
    let send_queues: Vec<String> = ["sms", "email", "portal"]
        .iter()
        .map(|c| inner.topology.send_queue(c).name)
        .collect();
    let queued: u32 = inner
        .broker
        .queue_depths(&send_queues)
        .await
        .iter()
        .filter_map(|q| q.messages)
        .sum();
    match in_flight(&inner.pool, &scope).await {
        Ok(in_flight) => view::page(
            StatusCode::OK,
            "Confirm pause",
            Some(&operator),
            "pause_confirm.html",
            context! {
                scope => scope.to_string(),
                scope_name => scope.name(),
                scope_value => scope.value(),
                what_stops => what_stops(&scope),
                in_flight,
                queued,
                reason => form.reason.trim(),
                duration => form.duration.trim(),
            },
        ),
        Err(error) => {
            tracing::warn!(%error, "in-flight count could not be read");
            view::unavailable(Some(&operator))
        }
    }
}
