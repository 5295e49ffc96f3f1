//! The send request (v1): the wire contract upstream apps code against.
//!
//! Upstream apps (CRM, reporting, incident tooling) ask the fleet to send a message by publishing
//! a send request to the `comms.send` exchange or POSTing it to the HTTP API. This module is that
//! contract in code: the serde shape ([`SendRequest`]), the vocabularies ([`Channel`], [`Kind`],
//! [`RecordType`], [`ConsentBasis`]), and the one validator both entry points share
//! ([`parse_send_request`]), which yields a typed, normalised [`ValidSendRequest`] or every
//! reason the request was refused ([`RequestErrors`]). `docs/contract.md` is the prose version
//! and `docs/send-request.schema.json` the JSON Schema; a test keeps all three in agreement.

mod canonical;
mod checks;
mod describe;
mod enums;
mod error;
#[cfg(test)]
mod schema_agreement;
mod valid;
mod validate;
mod wire;

pub use canonical::canonical_bytes;
pub use checks::{
    MAX_EMAIL_CHARS, MAX_TEMPLATE_NAME_CHARS, MAX_TEMPLATE_VERSION, MAX_TEXT_CHARS, email_address,
    phone_number,
};
pub use enums::{Channel, ConsentBasis, Kind, RecordType, UnknownValue};
pub use error::{
    FieldError, REASON_INVALID_JSON, REASON_INVALID_REQUEST, REASON_PAYLOAD_TOO_LARGE,
    REASON_ROUTING_KEY_MISMATCH, REASON_UNSTORABLE_CHARACTER, RequestErrors,
};
pub use valid::{Consent, Recipient, RecordRef, Template, ValidSendRequest};
pub use validate::{parse_send_request, validate};
pub use wire::{ConsentInput, RecipientInput, RecordInput, SendRequest, TemplateInput};

/// The wire name of this contract version, accepted in the optional `schema` key.
pub const SEND_REQUEST_V1: &str = "comms.send_request.v1";

/// The exchange send requests are published to, with routing key `send.<channel>`.
pub const SEND_EXCHANGE: &str = "comms.send";

/// The content type of a send request, on AMQP and HTTP.
pub const CONTENT_TYPE: &str = "application/json";

/// Largest accepted payload, in bytes (64 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
