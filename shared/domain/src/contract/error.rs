//! Why a send request was refused, field by field.
//!
//! A caller fixing a request wants every problem at once, and the dead-letter record wants one
//! short machine-readable reason; [`RequestErrors`] carries both. The field names are JSON paths
//! relative to the request (`owner`, `recipient.phone`, `template.vars`), with `$` meaning the
//! payload as a whole.

use std::fmt;

use serde::Serialize;

/// The body is not JSON at all.
pub const REASON_INVALID_JSON: &str = "invalid_json";
/// The body is larger than [`MAX_PAYLOAD_BYTES`](super::MAX_PAYLOAD_BYTES).
pub const REASON_PAYLOAD_TOO_LARGE: &str = "payload_too_large";
/// The body is JSON but not a valid send request (shape or values).
pub const REASON_INVALID_REQUEST: &str = "invalid_request";
/// A string or key of the request holds U+0000 (NUL), which PostgreSQL cannot store.
pub const REASON_UNSTORABLE_CHARACTER: &str = "unstorable_character";
/// A valid request that arrived on another channel's queue: its AMQP routing key
/// (`send.<channel>`) does not match its `channel` field. Only a consumer can tell.
pub const REASON_ROUTING_KEY_MISMATCH: &str = "routing_key_mismatch";

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct FieldError {
    /// JSON path of the field (`recipient.phone`), or `$` for the whole payload.
    pub field: String,
    /// What is wrong, in words a caller can act on.
    pub problem: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Every reason a send request was refused. Never empty.
/// Its `Display` lists them as `field: problem; field: problem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", join(.errors))]
pub struct RequestErrors {
    reason: &'static str,
    errors: Vec<FieldError>,
}

impl RequestErrors {
    pub(crate) fn new(reason: &'static str, errors: Vec<FieldError>) -> Self {
        Self { reason, errors }
    }

    pub(crate) fn one(reason: &'static str, field: &str, problem: impl Into<String>) -> Self {
        Self::new(reason, vec![FieldError::new(field, problem)])
    }

    /// The short reason stored with the rejected input and put on the dead-lettered message:
    /// [`REASON_INVALID_JSON`], [`REASON_PAYLOAD_TOO_LARGE`], [`REASON_UNSTORABLE_CHARACTER`]
    /// or [`REASON_INVALID_REQUEST`].
    pub fn reason_code(&self) -> &'static str {
        self.reason
    }

    /// The problems, in the order they were found.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The problems, owned.
    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    /// Whether any problem concerns exactly `field`.
    pub fn has_field(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    /// The problems reported for exactly `field`.
    pub fn problems_for<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.errors
            .iter()
            .filter(move |e| e.field == field)
            .map(|e| e.problem.as_str())
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(FieldError::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
