//! API keys: made here, stored only as a hash, shown once.
//!
//! A key is 32 random bytes, URL-safe base64, behind a `cfk_` prefix so a leaked key is easy to
//! recognise in a scanner or a log. The database keeps its SHA-256 (hex): a key with 256 bits of
//! entropy needs no slow password hash, and a database dump reveals no usable key. `commsctl keys`
//! calls these functions, and the gateway's `auth` module checks keys with [`hash_key`]; both
//! find them here, in the domain, so the command line does not depend on the gateway.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// The prefix of every key this fleet issues.
pub const KEY_PREFIX: &str = "cfk_";

/// What a key may do. Each gateway endpoint names the roles it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Upstream apps: may enqueue send requests.
    Enqueue,
    /// On-call engineers: may flip the pause switch.
    Oncall,
    /// Owners: may do what on-call does, and administer.
    Owner,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Enqueue, Role::Oncall, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Enqueue => "enqueue",
            Role::Oncall => "oncall",
            Role::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown role `{0}` (expected enqueue, oncall or owner)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// Why a key could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key name must be 1 to 100 characters and not blank")]
    InvalidName,
    #[error("no active key named `{0}`")]
    NotFound(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// A key just created: the only moment its secret exists outside the caller's hands.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// The key itself. Show it once; it cannot be recovered.
    pub key: String,
}

/// A stored key, as listings show it (never the key).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct KeyInfo {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A fresh random key.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a key: lowercase hex SHA-256.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates a key for `name` with `role` and returns it, secret included.
pub async fn create(pool: &PgPool, name: &str, role: Role) -> Result<CreatedKey, KeyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(KeyError::InvalidName);
    }
    let key = generate_key();
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO comms.api_keys (name, role, key_hash) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(hash_key(&key))
    .fetch_one(pool)
    .await?;
    Ok(CreatedKey {
        id,
        name: name.to_string(),
        role,
        key,
    })
}

/// Every key, newest first.
pub async fn list(pool: &PgPool) -> Result<Vec<KeyInfo>, KeyError> {
    Ok(sqlx::query_as(
        "SELECT id, name, role, created_at, revoked_at FROM comms.api_keys
         ORDER BY created_at DESC, name",
    )
    .fetch_all(pool)
    .await?)
}

/// Revokes every active key named `name`; returns how many.
pub async fn revoke(pool: &PgPool, name: &str) -> Result<u64, KeyError> {
    let revoked = sqlx::query(
        "UPDATE comms.api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
    )
    .bind(name.trim())
    .execute(pool)
    .await?
    .rows_affected();
    if revoked == 0 {
        return Err(KeyError::NotFound(name.trim().to_string()));
    }
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_hash_to_hex() {
        let a = generate_key();
        let b = generate_key();
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert_ne!(a, b);
        let hash = hash_key(&a);
        assert_eq!(hash.len(), 64);
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(hash, hash_key(&b));
    }

    #[test]
    fn roles_round_trip_by_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
