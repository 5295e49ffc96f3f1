//! Outreach sequences: versioned lists of steps that an escalation owner approves, contacts are
//! enrolled in, and the `comms-sequences` worker turns into ordinary send requests.
//!
//! The rules live here once, so `commsctl sequences`, the gateway's `POST /v1/enrolments` and the
//! worker's AMQP consumer refuse exactly the same inputs with the same reasons:
//!
//! - [`definition`]: the definition file and its checks (pure);
//! - [`store`]: adding, activating (the owner's audited approval), listing;
//! - [`rollback`]: the rollback path applied once to everyone in flight;
//! - [`enrol`]: the enrolment contract (`comms.enrolment.v1`), enrolling (a no-op the second
//!   time), and an owner's manual stop;
//! - [`timing`]: when a step is due (a delay, or a local time in the recipient's zone).
//!
//! A step goes out with idempotency key `seq:<enrolment>:<step>` and trigger `sequence:<name>`, so
//! every rule of the sender applies and a `sequence:<name>` pause holds it. See docs/sequences.md.

pub mod definition;
pub mod enrol;
pub mod exit;
pub mod rollback;
pub mod store;
pub mod timing;

#[cfg(test)]
mod schema_agreement;

use uuid::Uuid;

/// Whether `name` is a valid sequence name (the template name rule: `[a-z0-9_.-]{1,100}`).
pub fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// The idempotency key of a step (`step` ≥ 1) or, with step 0, of the rollback correction.
pub fn step_key(enrolment: Uuid, step: i32) -> String {
    if step == 0 {
        format!("seq:{enrolment}:correction")
    } else {
        format!("seq:{enrolment}:{step}")
    }
}

/// The trigger every message of sequence `name` carries (what a `sequence:<name>` pause matches).
pub fn trigger(name: &str) -> String {
    format!("sequence:{name}")
}

/// Parses `NAME@VERSION`.
pub fn parse_ref(target: &str) -> Option<(String, i32)> {
    let (name, version) = target.split_once('@')?;
    let version: i32 = version.parse().ok().filter(|v| *v > 0)?;
    valid_name(name).then(|| (name.to_string(), version))
}

/// Why a sequence operation was refused; `code()` is the stable reason code.
#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    #[error("{0}")]
    Invalid(String),
    #[error("sequence {0} does not exist")]
    NotFound(String),
    #[error("sequence {name}@{version} cannot be activated: {missing}")]
    NotActivatable {
        name: String,
        version: i32,
        missing: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl SequenceError {
    /// The reason code (HTTP bodies, rejected input, metrics).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_request",
            Self::NotFound(_) => "not_found",
            Self::NotActivatable { .. } => "not_activatable",
            Self::Conflict(_) => "conflict",
            Self::Db(_) => "database_unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_names_and_references() {
        let id = Uuid::nil();
        assert_eq!(
            step_key(id, 2),
            "seq:00000000-0000-0000-0000-000000000000:2"
        );
        assert!(step_key(id, 0).ends_with(":correction"));
        assert_eq!(parse_ref("winback@3"), Some(("winback".into(), 3)));
        assert_eq!(parse_ref("winback@0"), None);
        assert_eq!(parse_ref("Win Back@1"), None);
        assert!(valid_name("win_back.v2-b"));
        assert!(!valid_name(""));
        assert_eq!(trigger("winback"), "sequence:winback");
    }
}
