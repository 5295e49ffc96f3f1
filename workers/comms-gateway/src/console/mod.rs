//! The operator console at `/console`: the pause switch, queues, approvals, tasks, any message's
//! timeline, the dead letters, incidents and digests, in a browser (docs/console.md).
//!
//! Server-rendered HTML from embedded minijinja templates, one module per page, with one small
//! committed script (the home page's live refresh) and no front-end build. It calls the same code
//! as `commsctl` and the admin API — `comms_domain::pause::store`, `approvals`, `tasks`,
//! `timeline` — so a scope paused here is paused everywhere, by the same rules.
//!
//! Every page needs a session ([`session`]); every state-changing form is checked for its CSRF
//! token and audited with the key's name. Responses are never cached and never framed, and the
//! content security policy allows only this origin's own script and style.

mod approvals;
mod confirm;
mod dead;
mod digests;
mod home;
mod incidents;
mod login;
mod messages;
mod pause;
mod session;
mod tasks;
mod view;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::GatewayState;

pub(crate) use digests::enqueue_digest_jobs;

const CSS: &str = include_str!("../../static/console.css");
const JS: &str = include_str!("../../static/console.js");

const SECURITY_HEADERS: [(header::HeaderName, &str); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// Every console route; the gateway's router merges it.
pub fn router() -> Router<GatewayState> {
    Router::new()
        .route("/console", get(home::page))
        .route("/console/live", get(home::live))
        .route("/console/login", get(login::form).post(login::login))
        .route("/console/logout", post(login::logout))
        .route("/console/pause", get(pause::page).post(pause::pause))
        .route("/console/pause/confirm", post(confirm::confirm))
        .route("/console/resume", post(pause::resume))
        .route("/console/approvals", get(approvals::page))
        .route(
            "/console/approvals/{id}/{decision}",
            post(approvals::decide),
        )
        .route("/console/tasks", get(tasks::page))
        .route("/console/tasks/{id}/close", post(tasks::close))
        .route(
            "/console/messages",
            get(messages::form).post(messages::search),
        )
        .route("/console/messages/{reference}", get(messages::one))
        .route("/console/dead", get(dead::page))
        .route("/console/dead/replay", post(dead::replay))
        .route("/console/dead/purge", post(dead::purge))
        .route("/console/incidents", get(incidents::page))
        .route("/console/incidents/{id}", get(incidents::one))
        .route(
            "/console/incidents/{id}/resume-automation",
            post(incidents::resume_automation),
        )
        .route("/console/digests", get(digests::page))
        .route("/console/digests/{id}", get(digests::one))
        .route("/console/digests/{id}/approve", post(digests::approve))
        .route(
            "/console/digests/clients/{client}/release",
            post(digests::release),
        )
        .route("/console/static/console.css", get(css))
        .route("/console/static/console.js", get(js))
        .layer(axum::middleware::map_response(secure))
}

async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}
