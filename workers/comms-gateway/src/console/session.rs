//! Console sessions: who is signed in, and the checks every console action passes.
//!
//! Signing in with an API key creates a random 256-bit session token. The browser keeps it in the
//! `comms_console` cookie (`Secure; HttpOnly; SameSite=Strict; Path=/console`, with a `Max-Age`);
//! the database keeps only its SHA-256 in `comms.console_sessions`, with an expiry
//! (`gateway.console_session_ttl`). Every request re-reads the session *and its key*, so an
//! expired session, a signed-out one, or one whose key was revoked stops working at once.
//!
//! Every state-changing form carries a CSRF token derived from the session token (SHA-256 of a
//! fixed label and the token): it cannot be guessed without the cookie, and it needs no storage.
//! [`Operator::act`] checks it in constant time and writes the attempt to `comms.api_audit` with the
//! key's name, allowed or not, before anything changes; an action that cannot be audited does not
//! happen.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::view;
use crate::auth::ApiCaller;
use crate::state::GatewayState;
use comms_domain::api_keys::{Role, generate_key, hash_key};

/// The session cookie.
pub const COOKIE: &str = "comms_console";
/// The login form's double-submit cookie (the CSRF token before there is a session).
pub const LOGIN_COOKIE: &str = "comms_console_login";

/// A signed-in operator: a live session of an unrevoked `oncall` or `owner` key.
#[derive(Debug, Clone)]
pub struct Operator {
    pub session: Uuid,
    pub caller: ApiCaller,
    csrf: String,
}

impl Operator {
    pub fn is_owner(&self) -> bool {
        self.caller.role == Role::Owner
    }

    /// The token this session's forms must carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Checks a state-changing request: its CSRF token, and (when given) that the key holds
    /// `role`; audits the attempt as `POST <path>` either way. `Err` is the page to answer with.
    pub async fn act(
        &self,
        state: &GatewayState,
        path: &str,
        csrf: &str,
        role: Option<Role>,
    ) -> Result<(), Response> {
        let csrf_ok = bool::from(self.csrf.as_bytes().ct_eq(csrf.as_bytes()));
        let role_ok = role.is_none_or(|r| r == self.caller.role);
        audit(state, &self.caller, "POST", path, csrf_ok && role_ok).await?;
        if !csrf_ok {
            tracing::warn!(api.key_name = %self.caller.name, http.path = %path, "console form without a valid CSRF token refused");
            return Err(view::error(
                StatusCode::FORBIDDEN,
                Some(self),
                "This form is missing its security token, or the token belongs to another session. \
                 Nothing was changed: reload the page and try again.",
            ));
        }
        if !role_ok {
            return Err(self.forbidden());
        }
        Ok(())
    }

    /// Checks that the key may see an owner-only page; audits a refusal.
    pub async fn owner_page(&self, state: &GatewayState, path: &str) -> Result<(), Response> {
        if self.is_owner() {
            return Ok(());
        }
        audit(state, &self.caller, "GET", path, false).await?;
        Err(self.forbidden())
    }

    fn forbidden(&self) -> Response {
        view::error(
            StatusCode::FORBIDDEN,
            Some(self),
            &format!(
                "Key `{}` has role {}, which may not do this: it needs an owner key (approvals, digests, an incident's resume-automation, privacy).",
                self.caller.name, self.caller.role
            ),
        )
    }
}

/// Writes one console request to `comms.api_audit`; `Err` (503) when it cannot be written.
pub async fn audit(
    state: &GatewayState,
    caller: &ApiCaller,
    method: &str,
    path: &str,
    allowed: bool,
) -> Result<(), Response> {
    match state
        .inner()
        .keys
        .audit(caller, method, path, allowed)
        .await
    {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::warn!(%error, api.key_name = %caller.name, "console action could not be audited; refused");
            Err(view::unavailable(None))
        }
    }
}

/// The CSRF token of a session token.
pub fn csrf_of(token: &str) -> String {
    hash_key(&format!("comms-console-csrf\u{0}{token}"))
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value for a console cookie that lives `max_age` seconds (0 deletes it).
pub fn set_cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/console; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict")
}

/// Starts a session for `caller`; returns the token for the cookie.
pub async fn start(state: &GatewayState, caller: &ApiCaller) -> Result<String, sqlx::Error> {
    let ttl = state.inner().settings.gateway.console_session_ttl;
    let token = generate_key();
    sqlx::query(
        "INSERT INTO comms.console_sessions (token_hash, key_id, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(hash_key(&token))
    .bind(caller.key_id)
    .bind(ttl.as_secs_f64())
    .execute(&state.inner().pool)
    .await?;
    Ok(token)
}

/// Ends a session (sign-out).
pub async fn end(state: &GatewayState, session: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE comms.console_sessions SET ended_at = now() WHERE id = $1")
        .bind(session)
        .execute(&state.inner().pool)
        .await?;
    Ok(())
}

impl FromRequestParts<GatewayState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &GatewayState,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/console/login").into_response();
        let Some(token) = cookie(&parts.headers, COOKIE).filter(|t| !t.is_empty()) else {
            return Err(to_login());
        };
        let row: Option<(Uuid, Uuid, String, String)> = sqlx::query_as(
            "SELECT s.id, k.id, k.name, k.role
             FROM comms.console_sessions s JOIN comms.api_keys k ON k.id = s.key_id
             WHERE s.token_hash = $1 AND s.ended_at IS NULL AND s.expires_at > now()
               AND k.revoked_at IS NULL",
        )
        .bind(hash_key(token))
        .fetch_optional(&state.inner().pool)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "console session could not be read");
            view::unavailable(None)
        })?;
        let Some((session, key_id, name, role)) = row else {
            return Err(to_login());
        };
        match role.parse::<Role>() {
            Ok(role @ (Role::Oncall | Role::Owner)) => Ok(Self {
                session,
                caller: ApiCaller { key_id, name, role },
                csrf: csrf_of(token),
            }),
            _ => Err(to_login()),
        }
    }
}

/// A redirect after a successful action (POST, then GET: reloading does not repeat it).
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "comms_console_login=a; comms_console=b"
                .parse()
                .expect("header"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("b"));
        assert_eq!(cookie(&headers, LOGIN_COOKIE), Some("a"));
        assert_eq!(cookie(&headers, "other"), None);
    }

    #[test]
    fn the_csrf_token_is_not_the_session_token() {
        let token = generate_key();
        assert_ne!(csrf_of(&token), token);
        assert_ne!(
            csrf_of(&token),
            hash_key(&token),
            "not the stored hash either"
        );
        assert_eq!(csrf_of(&token), csrf_of(&token));
    }
}
