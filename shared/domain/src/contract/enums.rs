//! The closed vocabularies of the send request: channel, kind, record type and consent basis.
//!
//! They exist as enums so a typo is a rejected request instead of a silently unroutable message.
//! Each one's wire string (serde, `as_str`, `Display`, `FromStr`) is the same snake_case text, and
//! that text is also what the database stores, so the four must never drift apart; `ALL` lists
//! every value so the JSON Schema agreement test and the database checks can enumerate them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A string that is not one of an enum's wire values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {type_name} `{value}`")]
pub struct UnknownValue {
    /// Which vocabulary was asked, e.g. `channel`.
    pub type_name: &'static str,
    /// The text that matched none of its values.
    pub value: String,
}

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($type_name:literal) {
            $( $(#[$vmeta:meta])* $variant:ident => $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire (and database) text of this value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $wire, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            /// Exactly the wire text: no trimming, no case folding.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownValue { type_name: $type_name, value: s.to_owned() })
            }
        }
    };
}

wire_enum! {
    /// How the message reaches the recipient. Also the last part of the AMQP routing key.
    Channel ("channel") {
        /// A text message via Twilio.
        Sms => "sms",
        /// An email via SendGrid.
        Email => "email",
        /// An update shown in the client portal.
        Portal => "portal",
    }
}

impl Channel {
    /// The routing key a request for this channel is published with on `comms.send`.
    pub const fn routing_key(self) -> &'static str {
        match self {
            Channel::Sms => "send.sms",
            Channel::Email => "send.email",
            Channel::Portal => "send.portal",
        }
    }
}

wire_enum! {
    /// Why the message is sent; drives consent, quiet-hours and approval rules downstream.
    Kind ("kind") {
        /// A message the recipient expects as part of a service (confirmations, receipts).
        Transactional => "transactional",
        /// Unsolicited marketing contact; needs express consent.
        Outreach => "outreach",
        /// A request to leave a review.
        ReviewRequest => "review_request",
        /// A request to approve something (a quote, a change).
        ApprovalRequest => "approval_request",
        /// Notice of an incident affecting the client.
        IncidentNotice => "incident_notice",
        /// A periodic report digest.
        ReportDigest => "report_digest",
        /// A portal update notification.
        PortalUpdate => "portal_update",
    }
}

wire_enum! {
    /// The type of the business record a message is attached to.
    RecordType ("record type") {
        /// A sales lead.
        Lead => "lead",
        /// A client.
        Client => "client",
        /// A project.
        Project => "project",
        /// A report.
        Report => "report",
        /// An incident.
        Incident => "incident",
        /// An approval.
        Approval => "approval",
    }
}

wire_enum! {
    /// The legal basis a consent record claims. Only `express` counts as consent for outreach.
    ConsentBasis ("consent basis") {
        /// The recipient explicitly agreed (a signed form, a ticked box, a keyword opt-in).
        Express => "express",
        /// Consent inferred from a relationship (an existing customer); never enough for
        /// outreach, recorded so the sender can say why it refused.
        Implied => "implied",
    }
}

impl ConsentBasis {
    /// Whether this basis allows `outreach` messages.
    pub const fn allows_outreach(self) -> bool {
        matches!(self, ConsentBasis::Express)
    }
}
