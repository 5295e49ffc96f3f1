//! The send request after validation: typed, normalised, and only obtainable by validating.
//!
//! Workers act on these types so that "is this phone number E.164?" or "is this a real time
//! zone?" is answered once, at the edge, and never again. The structs are `#[non_exhaustive]`:
//! other crates can read every field but cannot build one without going through
//! [`parse_send_request`](super::parse_send_request) or [`validate`](super::validate()).
//! Serialising a [`ValidSendRequest`] gives the canonical v1 JSON (schema marker included,
//! timestamps in UTC), which parses back to an equal value.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use uuid::Uuid;

use super::SEND_REQUEST_V1;
use super::enums::{Channel, ConsentBasis, Kind, RecordType};
use super::wire::{ConsentInput, RecipientInput, RecordInput, SendRequest, TemplateInput};

/// A send request that passed every check.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(into = "SendRequest")]
#[non_exhaustive]
pub struct ValidSendRequest {
    /// The caller's idempotency key, exactly as sent (1–200 characters).
    pub idempotency_key: String,
    /// How to reach the recipient.
    pub channel: Channel,
    /// Why the message is sent.
    pub kind: Kind,
    /// Who receives it; fits `channel`.
    pub recipient: Recipient,
    /// Which template renders it.
    pub template: Template,
    /// The record it is attached to.
    pub record: RecordRef,
    /// Accountable person or team, trimmed.
    pub owner: String,
    /// Upstream app, trimmed.
    pub source: String,
    /// Upstream event, trimmed.
    pub trigger: String,
    /// The consent claim the caller sent, if any.
    pub consent: Option<Consent>,
    /// Not before this instant.
    pub send_after: Option<DateTime<Utc>>,
    /// Carries ROI or revenue proof: needs the owner's approval.
    pub contains_roi: bool,
    /// Drafted by an AI.
    pub ai_draft: bool,
}

impl ValidSendRequest {
    /// The routing key this request belongs on (`send.<channel>`).
    pub fn routing_key(&self) -> &'static str {
        self.channel.routing_key()
    }

    /// Whether the request itself carries express consent (the only basis that allows
    /// outreach). `false` does not mean "no consent": the sender may still find it on file.
    pub fn has_express_consent(&self) -> bool {
        self.consent
            .as_ref()
            .is_some_and(|c| c.basis.allows_outreach())
    }

    /// The canonical wire form as JSON, as a message stores it (`comms.messages.request`), so
    /// held and approved messages can be sent again as asked. Should it ever fail to serialise,
    /// an empty object is stored (never JSON `null`), the same on every path that records.
    pub fn to_stored_json(&self) -> serde_json::Value {
        serde_json::to_value(self.to_wire())
            .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new()))
    }

    /// The canonical wire form: schema marker set, UUIDs lower-case, timestamps in UTC.
    pub fn to_wire(&self) -> SendRequest {
        SendRequest {
            schema: Some(SEND_REQUEST_V1.to_owned()),
            idempotency_key: self.idempotency_key.clone(),
            channel: self.channel,
            kind: self.kind,
            recipient: self.recipient.to_wire(),
            template: TemplateInput {
                name: self.template.name.clone(),
                version: self.template.version.map(i64::from),
                vars: serde_json::Value::Object(self.template.vars.clone()),
            },
            record: RecordInput {
                record_type: self.record.record_type,
                id: self.record.id.to_string(),
            },
            owner: self.owner.clone(),
            source: self.source.clone(),
            trigger: self.trigger.clone(),
            consent: self.consent.as_ref().map(|c| ConsentInput {
                basis: c.basis,
                source: c.source.clone(),
                captured_at: rfc3339(c.captured_at),
            }),
            send_after: self.send_after.map(rfc3339),
            contains_roi: self.contains_roi,
            ai_draft: self.ai_draft,
        }
    }
}

impl From<ValidSendRequest> for SendRequest {
    fn from(valid: ValidSendRequest) -> Self {
        valid.to_wire()
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Who receives the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A CRM contact; the sender looks up its addresses, name and time zone.
    #[non_exhaustive]
    Contact {
        /// The contact's id.
        contact_id: Uuid,
    },
    /// A bare phone number.
    #[non_exhaustive]
    Phone {
        /// E.164, e.g. `+14155552671`.
        phone: String,
        /// How to address the person, trimmed.
        name: Option<String>,
        /// The recipient's time zone.
        time_zone: Option<Tz>,
    },
    /// A bare email address.
    #[non_exhaustive]
    Email {
        /// The address, domain lower-cased.
        email: String,
        /// How to address the person, trimmed.
        name: Option<String>,
        /// The recipient's time zone.
        time_zone: Option<Tz>,
    },
}

impl Recipient {
    /// The contact id, for a contact recipient.
    pub fn contact_id(&self) -> Option<Uuid> {
        match self {
            Recipient::Contact { contact_id } => Some(*contact_id),
            _ => None,
        }
    }

    /// The E.164 number, for a phone recipient.
    pub fn phone(&self) -> Option<&str> {
        match self {
            Recipient::Phone { phone, .. } => Some(phone),
            _ => None,
        }
    }

    /// The address, for an email recipient.
    pub fn email(&self) -> Option<&str> {
        match self {
            Recipient::Email { email, .. } => Some(email),
            _ => None,
        }
    }

    /// The name given with a phone or email recipient.
    pub fn name(&self) -> Option<&str> {
        match self {
            Recipient::Phone { name, .. } | Recipient::Email { name, .. } => name.as_deref(),
            Recipient::Contact { .. } => None,
        }
    }

    /// The time zone given with a phone or email recipient.
    pub fn time_zone(&self) -> Option<Tz> {
        match self {
            Recipient::Phone { time_zone, .. } | Recipient::Email { time_zone, .. } => *time_zone,
            Recipient::Contact { .. } => None,
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> RecipientInput {
        let mut wire = RecipientInput {
            name: self.name().map(str::to_owned),
            time_zone: self.time_zone().map(|tz| tz.name().to_owned()),
            ..RecipientInput::default()
        };
        match self {
            Recipient::Contact { contact_id } => wire.contact_id = Some(contact_id.to_string()),
            Recipient::Phone { phone, .. } => wire.phone = Some(phone.clone()),
            Recipient::Email { email, .. } => wire.email = Some(email.clone()),
        }
        wire
    }
}

/// The template to render.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Template {
    /// `[a-z0-9_.-]{1,100}`.
    pub name: String,
    /// A pinned version (≥ 1); `None` means the latest approved one.
    pub version: Option<u32>,
    /// The variables, a JSON object.
    pub vars: serde_json::Map<String, serde_json::Value>,
}

/// The record the message is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RecordRef {
    /// Its type.
    pub record_type: RecordType,
    /// Its id.
    pub id: Uuid,
}

/// A consent claim.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Consent {
    /// The basis claimed; only [`ConsentBasis::Express`] allows outreach.
    pub basis: ConsentBasis,
    /// Where it was captured, trimmed.
    pub source: String,
    /// When it was captured.
    pub captured_at: DateTime<Utc>,
}
