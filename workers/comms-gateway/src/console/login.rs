//! Signing in and out. The login form takes an API key; only `oncall` and `owner` keys open a
//! session (an `enqueue` key belongs to an app, not a person). Before there is a session the form
//! is protected by a double-submit token: a random value in a short-lived cookie that the form
//! must repeat.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::session::{self, COOKIE, LOGIN_COOKIE, Operator};
use super::view;
use crate::state::GatewayState;
use comms_domain::api_keys::{Role, generate_key};

/// How long the login form stays valid.
const LOGIN_FORM_SECONDS: u64 = 600;

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `GET /console/login`
pub async fn form() -> Response {
    login_page(StatusCode::OK, None)
}

fn login_page(status: StatusCode, problem: Option<&str>) -> Response {
    let token = generate_key();
    let mut response = view::page(
        status,
        "Sign in",
        None,
        "login.html",
        context! { csrf => token.clone(), problem },
    );
    if let Ok(value) = session::set_cookie(LOGIN_COOKIE, &token, LOGIN_FORM_SECONDS).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `POST /console/login`
pub async fn login(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("This sign-in form has expired or was not sent from this console. Try again."),
        );
    }
    let caller = match state.inner().keys.authenticate(form.key.trim()).await {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            tracing::info!("console sign-in with an unknown or revoked key");
            return login_page(
                StatusCode::UNAUTHORIZED,
                Some("That key is not valid (unknown or revoked)."),
            );
        }
        Err(error) => {
            tracing::warn!(%error, "API keys could not be read for a console sign-in");
            return view::unavailable(None);
        }
    };
    let allowed = matches!(caller.role, Role::Oncall | Role::Owner);
    if let Err(response) = session::audit(&state, &caller, "POST", "/console/login", allowed).await
    {
        return response;
    }
    if !allowed {
        tracing::info!(api.key_name = %caller.name, api.role = %caller.role, "console sign-in refused for the key's role");
        return login_page(
            StatusCode::FORBIDDEN,
            Some(
                "This key cannot sign in to the console: only oncall and owner keys can. \
                 Enqueue keys are for apps.",
            ),
        );
    }
    let token = match session::start(&state, &caller).await {
        Ok(token) => token,
        Err(error) => {
            tracing::warn!(%error, "console session could not be stored");
            return view::unavailable(None);
        }
    };
    tracing::info!(api.key_name = %caller.name, api.role = %caller.role, "console sign-in");
    let ttl = state.inner().settings.gateway.console_session_ttl.as_secs();
    let mut response = session::see_other("/console");
    for value in [
        session::set_cookie(COOKIE, &token, ttl),
        session::set_cookie(LOGIN_COOKIE, "", 0),
    ] {
        if let Ok(value) = value.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// `POST /console/logout`
pub async fn logout(
    State(state): State<GatewayState>,
    operator: Operator,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(response) = operator
        .act(&state, "/console/logout", &form.csrf, None)
        .await
    {
        return response;
    }
    if let Err(error) = session::end(&state, operator.session).await {
        tracing::warn!(%error, "console session could not be ended");
        return view::unavailable(Some(&operator));
    }
    let mut response = session::see_other("/console/login");
    if let Ok(value) = session::set_cookie(COOKIE, "", 0).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response.into_response()
}
