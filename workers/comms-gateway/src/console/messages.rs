//! Finding messages and reading one's whole timeline (what `commsctl message` shows, from the
//! same `comms_domain::timeline`).
//!
//! Search is by idempotency key or id (straight to the message), or by recipient (an exact
//! address, never a partial one), state or client, newest 50 first. Listings never show a
//! recipient. The search form is a POST, so an address searched for stays out of URLs, browser
//! history and access logs; like every console form it carries the CSRF token and is audited, and
//! a search by address is also recorded in the access log (`commsctl audit access`).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use comms_domain::messages::DeliveryState;
use comms_domain::privacy::access::{self, Access, Via};
use comms_domain::timeline::{self, MessageSummary, SUMMARY_COLUMNS};
use minijinja::context;
use serde::Deserialize;
use uuid::Uuid;

use super::session::{Operator, see_other};
use super::view;
use crate::state::GatewayState;

/// The most messages a search lists.
const LIMIT: i64 = 50;

/// Every delivery state, in the order the search form lists them.
fn states() -> Vec<&'static str> {
    DeliveryState::ALL.iter().map(|s| s.as_str()).collect()
}

#[derive(Debug, Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    by: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    csrf: String,
}

/// `GET /console/messages`: the search form.
pub async fn form(operator: Operator) -> Response {
    render(&operator, StatusCode::OK, None, None, None)
}

fn render(
    operator: &Operator,
    status: StatusCode,
    found: Option<Vec<MessageSummary>>,
    by: Option<&str>,
    problem: Option<&str>,
) -> Response {
    view::page(
        status,
        "Messages",
        Some(operator),
        "messages.html",
        context! { found, by, problem, states => states(), limit => LIMIT },
    )
}

/// `POST /console/messages`: a search.
pub async fn search(
    State(state): State<GatewayState>,
    operator: Operator,
    Form(form): Form<SearchForm>,
) -> Response {
    if let Err(refused) = operator
        .act(&state, "/console/messages", &form.csrf, None)
        .await
    {
        return refused;
    }
    let q = form.q.trim();
    let pool = &state.inner().pool;
    let by = form.by.as_str();
    let listed: Result<Vec<MessageSummary>, sqlx::Error> = match by {
        "key" | "id" => {
            return match timeline::view(pool, q).await {
                Ok(Some(found)) => see_other(&format!("/console/messages/{}", found.message.id)),
                Ok(None) => render(
                    &operator,
                    StatusCode::NOT_FOUND,
                    None,
                    Some(by),
                    Some("No message has that id or idempotency key."),
                ),
                Err(error) => {
                    tracing::warn!(%error, "message could not be read");
                    view::unavailable(Some(&operator))
                }
            };
        }
        "recipient" => {
            // Finding someone by their full address is a read of personal data: recorded
            // (docs/privacy.md), with the contact it names, never the address.
            let contact: Option<Uuid> = match sqlx::query_scalar(
                "SELECT contact_id FROM comms.contact_channels WHERE address = $1 LIMIT 1",
            )
            .bind(q)
            .fetch_optional(pool)
            .await
            {
                Ok(contact) => contact,
                Err(_) => return view::unavailable(Some(&operator)),
            };
            let access = Access {
                who: &operator.caller.name,
                via: Via::Console,
                what: "messages searched by full address",
                message_id: None,
                contact_id: contact,
                why: None,
            };
            if access::record(pool, &access).await.is_err() {
                return view::unavailable(Some(&operator));
            }
            sqlx::query_as(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM comms.messages
                 WHERE contact_id IN (SELECT contact_id FROM comms.contact_channels WHERE address = $1)
                   AND recipient_address = $1
                 ORDER BY created_at DESC LIMIT $2"
            ))
            .bind(q)
            .bind(LIMIT)
            .fetch_all(pool)
            .await
        }
        "state" if q.parse::<DeliveryState>().is_ok() => {
            sqlx::query_as(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM comms.messages WHERE delivery_state = $1
                 ORDER BY created_at DESC LIMIT $2"
            ))
            .bind(q)
            .bind(LIMIT)
            .fetch_all(pool)
            .await
        }
        "client" if q.parse::<Uuid>().is_ok() => {
            sqlx::query_as(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM comms.messages WHERE client_id = $1
                 ORDER BY created_at DESC LIMIT $2"
            ))
            .bind(q.parse::<Uuid>().ok())
            .bind(LIMIT)
            .fetch_all(pool)
            .await
        }
        _ => {
            let problem = match by {
                "state" => format!("Pick a state: one of {}.", states().join(", ")),
                "client" => "A client is searched by its id (a UUID).".to_string(),
                _ => "Search by idempotency key, id, recipient, state or client.".to_string(),
            };
            return render(
                &operator,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(by),
                Some(&problem),
            );
        }
    };
    match listed {
        Ok(found) => render(&operator, StatusCode::OK, Some(found), Some(by), None),
        Err(error) => {
            tracing::warn!(%error, "messages could not be searched");
            view::unavailable(Some(&operator))
        }
    }
}

/// `GET /console/messages/{id or idempotency key}`: one message and its timeline.
pub async fn one(
    State(state): State<GatewayState>,
    operator: Operator,
    Path(reference): Path<String>,
) -> Response {
    match timeline::view(&state.inner().pool, &reference).await {
        Ok(Some(found)) => view::page(
            StatusCode::OK,
            &format!("Message {}", found.message.idempotency_key),
            Some(&operator),
            "message.html",
            context! { m => found.message, timeline => found.timeline },
        ),
        Ok(None) => view::error(
            StatusCode::NOT_FOUND,
            Some(&operator),
            "No message has that id or idempotency key.",
        ),
        Err(error) => {
            tracing::warn!(%error, "message could not be read");
            view::unavailable(Some(&operator))
        }
    }
}
