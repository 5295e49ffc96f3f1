//! API-key authentication and role checks for `/v1/*`, as a reusable axum extractor.
//!
//! A handler states who may call it in its signature: `Authorized<Enqueue>` accepts `enqueue`
//! keys, `Authorized<Oncall>` accepts `oncall` and `owner` keys, `Authorized<Owner>` only `owner`.
//! No key, a malformed header, or an unknown or revoked key is 401; a valid key without the
//! role is 403. Every call made with a valid key — allowed or not — is written to
//! `comms.api_audit` and logged with the key's *name* (the key itself is never logged or stored).
//! If the audit row cannot be written the call is refused with 503: an unaudited call does not
//! happen. Any router whose state provides [`ApiKeys`] (via `FromRef`) can use the extractor.

use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use uuid::Uuid;

use crate::reply;
use crate::write_batch::{BatchError, WriteBatch, by_ordinal};
use comms_domain::api_keys::{Role, hash_key};

/// The key store, as the extractor needs it.
#[derive(Clone)]
pub struct ApiKeys {
    pool: PgPool,
    checks: WriteBatch<AuditedCall, Option<ApiCaller>>,
}

/// Calls checked and audited together at most (one statement).
const CHECK_BATCH_MAX: usize = 128;
/// Check statements running at once (each on its own pool connection).
const CHECKS_IN_FLIGHT: usize = 3;

/// One call to check and audit: the presented key's hash, what was called, and the roles the
/// endpoint accepts (comma-separated).
struct AuditedCall {
    key_hash: String,
    method: String,
    path: String,
    roles: String,
}

/// Who is calling: a valid, unrevoked key.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub key_id: Uuid,
    /// The key's name (the calling app); safe to log.
    pub name: String,
    pub role: Role,
}

impl ApiCaller {
    /// A key's row (id, name, role); `None` for a role this version does not know.
    fn from_row((key_id, name, role): (Uuid, String, String)) -> Option<Self> {
        Some(Self {
            key_id,
            name,
            role: role.parse().ok()?,
        })
    }
}

impl ApiKeys {
    /// The key store on `pool`, with its batch task (must be called inside the Tokio runtime).
    pub fn new(pool: PgPool) -> Self {
        let batch_pool = pool.clone();
        let checks = WriteBatch::spawn(CHECK_BATCH_MAX, CHECKS_IN_FLIGHT, move |calls| {
            check_and_audit(batch_pool.clone(), calls)
        });
        Self { pool, checks }
    }

    /// The caller a presented key belongs to, if it is known and not revoked.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<ApiCaller>, sqlx::Error> {
        let row: Option<(Uuid, String, String)> = sqlx::query_as(
            "SELECT id, name, role FROM comms.api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash_key(presented))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(ApiCaller::from_row))
    }

    /// [`Self::authenticate`] and [`Self::audit`] together, the call already audited as allowed
    /// when the key holds one of `roles`: the caller of a known, unrevoked key. Calls arriving
    /// together are checked and audited in one statement and one commit
    /// ([`crate::write_batch`]); each is answered only once that commit is done. An error means
    /// the key could not be checked or the call not audited; either way the call must not happen.
    pub async fn authenticate_audited(
        &self,
        presented: &str,
        method: &str,
        path: &str,
        roles: &[Role],
    ) -> Result<Option<ApiCaller>, BatchError> {
        let roles: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
        self.checks
            .write(AuditedCall {
                key_hash: hash_key(presented),
                method: method.to_owned(),
                path: path.to_owned(),
                roles: roles.join(","),
            })
            .await
    }

    pub(crate) async fn audit(
        &self,
        caller: &ApiCaller,
        method: &str,
        path: &str,
        allowed: bool,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO comms.api_audit (key_id, key_name, role, method, path, allowed)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(caller.key_id)
        .bind(&caller.name)
        .bind(caller.role.as_str())
        .bind(method)
        .bind(path)
        .bind(allowed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Checks `calls`' keys and audits each call made with a known key, in one statement: one
/// caller (or `None`) per call, in order.
async fn check_and_audit(
    pool: PgPool,
    calls: Vec<AuditedCall>,
) -> Result<Vec<Option<ApiCaller>>, sqlx::Error> {
    let column =
        |field: fn(&AuditedCall) -> &str| -> Vec<&str> { calls.iter().map(field).collect() };
    let rows: Vec<(i64, Uuid, String, String)> = sqlx::query_as(
        "WITH call AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                 WITH ORDINALITY AS c(key_hash, method, path, roles, n)),
         k AS (
             SELECT call.n, call.method, call.path, call.roles, a.id, a.name, a.role
             FROM call JOIN comms.api_keys a
               ON a.key_hash = call.key_hash AND a.revoked_at IS NULL),
         audited AS (
             INSERT INTO comms.api_audit (key_id, key_name, role, method, path, allowed)
             SELECT id, name, role, method, path, role = ANY(string_to_array(roles, ','))
             FROM k ORDER BY n)
         SELECT n, id, name, role FROM k",
    )
    .bind(column(|call| &call.key_hash))
    .bind(column(|call| &call.method))
    .bind(column(|call| &call.path))
    .bind(column(|call| &call.roles))
    .fetch_all(&pool)
    .await?;
    let rows = rows
        .into_iter()
        .map(|(n, id, name, role)| (n, ApiCaller::from_row((id, name, role))));
    Ok(by_ordinal(calls.len(), rows)
        .into_iter()
        .map(Option::flatten)
        .collect())
}

/// The roles an endpoint accepts.
pub trait Access: Send + Sync + 'static {
    const ROLES: &'static [Role];
}

/// Enqueueing send requests: `enqueue` keys only.
pub struct Enqueue;
impl Access for Enqueue {
    const ROLES: &'static [Role] = &[Role::Enqueue];
}

/// Operating the fleet (pause, resume): `oncall` and `owner` keys.
pub struct Oncall;
impl Access for Oncall {
    const ROLES: &'static [Role] = &[Role::Oncall, Role::Owner];
}

/// Administration: `owner` keys only.
pub struct Owner;
impl Access for Owner {
    const ROLES: &'static [Role] = &[Role::Owner];
}

/// A caller whose key holds one of `A`'s roles.
pub struct Authorized<A: Access> {
    pub caller: ApiCaller,
    access: PhantomData<fn() -> A>,
}

/// Why a call was refused before its handler ran.
#[derive(Debug)]
pub enum AuthRejection {
    /// No `Authorization: Bearer …` header (401).
    Missing,
    /// A key we do not know, or a revoked one (401).
    Unknown,
    /// A valid key without the role (403).
    Forbidden { name: String, role: Role },
    /// The key store could not be read or the call not audited (503).
    Unavailable,
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            AuthRejection::Missing | AuthRejection::Unknown => {
                let message = if matches!(self, AuthRejection::Missing) {
                    "send an API key as `Authorization: Bearer <key>`"
                } else {
                    "the API key is not valid (unknown or revoked)"
                };
                let mut response =
                    reply::error(StatusCode::UNAUTHORIZED, "unauthenticated", message);
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                response
            }
            AuthRejection::Forbidden { name, role } => reply::error(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("key `{name}` has role {role}, which may not call this endpoint"),
            ),
            AuthRejection::Unavailable => reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "API keys cannot be checked right now; try again",
            ),
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

impl<S, A> FromRequestParts<S> for Authorized<A>
where
    S: Send + Sync,
    A: Access,
    ApiKeys: FromRef<S>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let keys = ApiKeys::from_ref(state);
        let presented = bearer(parts).ok_or(AuthRejection::Missing)?;
        let method = parts.method.as_str();
        let path = parts.uri.path();
        let caller = match keys
            .authenticate_audited(presented, method, path, A::ROLES)
            .await
        {
            Ok(Some(caller)) => caller,
            Ok(None) => {
                tracing::info!(http.path = %path, "API call with an unknown or revoked key");
                return Err(AuthRejection::Unknown);
            }
            Err(error) => {
                tracing::warn!(%error, "API keys could not be read or the call not audited; refused");
                return Err(AuthRejection::Unavailable);
            }
        };
        let allowed = A::ROLES.contains(&caller.role);
        tracing::info!(api.key_name = %caller.name, api.role = %caller.role, http.method = %method, http.path = %path, allowed, "authenticated API call");
        if !allowed {
            return Err(AuthRejection::Forbidden {
                name: caller.name,
                role: caller.role,
            });
        }
        Ok(Self {
            caller,
            access: PhantomData,
        })
    }
}
