//! One-click unsubscribe (RFC 8058) for the `List-Unsubscribe` links the sender puts on outreach
//! and review-request email. `POST /unsubscribe/{token}` opts the contact out of email; a `GET`
//! (a person or a link scanner opening the URL) only shows a page with a button, and never
//! unsubscribes. Tokens are HMAC-signed (`comms_domain::unsubscribe`), so a forged one is refused.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use comms_domain::unsubscribe;
use secrecy::ExposeSecret;

use crate::reply;
use crate::state::GatewayState;

fn verified(state: &GatewayState, token: &str) -> Option<unsubscribe::Unsubscribe> {
    let secret = state
        .inner()
        .settings
        .replies
        .unsubscribe_secret
        .expose_secret()
        .as_bytes()
        .to_vec();
    unsubscribe::verify(&secret, token)
}

fn refused() -> Response {
    reply::error(
        StatusCode::NOT_FOUND,
        "unknown_link",
        "this unsubscribe link is not valid",
    )
}

/// `GET /unsubscribe/{token}`: a confirmation page; nothing changes.
pub async fn page(State(state): State<GatewayState>, Path(token): Path<String>) -> Response {
    if verified(&state, &token).is_none() {
        return refused();
    }
    Html(format!(
        "<!doctype html><title>Unsubscribe</title><form method=\"post\" action=\"/unsubscribe/{token}\">\
         <p>Stop receiving these emails?</p><button type=\"submit\">Unsubscribe</button></form>"
    ))
    .into_response()
}

/// `POST /unsubscribe/{token}`: opts the contact out of email, with an event.
pub async fn one_click(State(state): State<GatewayState>, Path(token): Path<String>) -> Response {
    let Some(who) = verified(&state, &token) else {
        return refused();
    };
    let pool = &state.inner().pool;
    let result = async {
        let mut tx = pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE comms.contact_channels SET consent_state = 'opted_out', consent_basis = 'list-unsubscribe',
                 consent_source = 'one-click unsubscribe', consent_at = now(), updated_at = now()
             WHERE contact_id = $1 AND channel = $2 AND consent_state <> 'opted_out'",
        )
        .bind(who.contact_id)
        .bind(&who.channel)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed > 0 {
            comms_domain::messages::ledger::moves::unsubscribed(
                &mut *tx,
                who.contact_id,
                &who.channel,
            )
            .await?;
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>(changed)
    }
    .await;
    match result {
        Ok(_) => {
            tracing::info!(contact.id = %who.contact_id, channel = %who.channel, "one-click unsubscribe");
            Html("<!doctype html><title>Unsubscribed</title><p>You are unsubscribed.</p>")
                .into_response()
        }
        Err(_) => reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "please try again",
        ),
    }
}
