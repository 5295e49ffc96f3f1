//! The send request exactly as it travels: the serde shape of the JSON, before any checking.
//!
//! These types exist to turn bytes into fields and back, nothing more: every object refuses
//! unknown keys, optional keys may be absent but never `null`, and values whose checks can fail
//! (UUIDs, timestamps, phone numbers) stay strings here so that `validate` can report every bad
//! one at once instead of stopping at the first. Code that acts on a request uses
//! [`ValidSendRequest`](super::ValidSendRequest), never these.

use serde::{Deserialize, Deserializer, Serialize};

use super::enums::{Channel, ConsentBasis, Kind, RecordType};

/// Optional keys: absent means `None`; an explicit `null` is a type error, as in the schema.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A send request (v1) as decoded from JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The version marker; when present it must be [`SEND_REQUEST_V1`](super::SEND_REQUEST_V1).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub schema: Option<String>,
    /// The same key never produces a second message (1–200 characters).
    pub idempotency_key: String,
    /// How to reach the recipient.
    pub channel: Channel,
    /// Why the message is sent.
    pub kind: Kind,
    /// Who receives it.
    pub recipient: RecipientInput,
    /// Which template renders it, with its variables.
    pub template: TemplateInput,
    /// The record the message is attached to.
    pub record: RecordInput,
    /// The person or team accountable for the message.
    pub owner: String,
    /// The upstream app that asked for it.
    pub source: String,
    /// The event in that app that caused it.
    pub trigger: String,
    /// The consent the caller holds for this recipient, if any.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub consent: Option<ConsentInput>,
    /// Do not send before this RFC 3339 instant.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub send_after: Option<String>,
    /// The content carries ROI or revenue proof and needs the owner's approval.
    #[serde(default)]
    pub contains_roi: bool,
    /// The content was drafted by an AI.
    #[serde(default)]
    pub ai_draft: bool,
}

/// The recipient as sent: one object whose address key decides what it is.
///
/// Exactly one of `contact_id`, `phone` and `email` must be present; `name` and `time_zone` go
/// only with `phone` or `email` (a contact record already holds both). The three shapes share one
/// struct so that a wrong combination is reported as a field error, with every other error,
/// rather than as serde's "did not match any variant".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientInput {
    /// A contact in the CRM (UUID).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub contact_id: Option<String>,
    /// A phone number in E.164 form (`+` and country code).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub phone: Option<String>,
    /// An email address.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub email: Option<String>,
    /// How to address the person.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// The recipient's IANA time zone, for quiet hours.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub time_zone: Option<String>,
}

/// The template reference as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    /// The template's name, `[a-z0-9_.-]{1,100}`.
    pub name: String,
    /// A pinned version; absent means the latest approved one.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub version: Option<i64>,
    /// The template variables; must be a JSON object.
    pub vars: serde_json::Value,
}

/// The attached record as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    /// The record's type.
    #[serde(rename = "type")]
    pub record_type: RecordType,
    /// The record's UUID.
    pub id: String,
}

/// The consent claim as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    /// The legal basis claimed.
    pub basis: ConsentBasis,
    /// Where it was captured (a form, a call, a keyword).
    pub source: String,
    /// When it was captured (RFC 3339).
    pub captured_at: String,
}
