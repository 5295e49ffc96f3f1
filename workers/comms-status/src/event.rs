//! One provider status event in the fleet's terms: which message it is about, what it means for
//! the canonical delivery state, and what it means for consent.
//!
//! The provider parsers (`twilio.rs`, `sendgrid.rs`) produce these; `store.rs` applies them. The
//! canonical state only moves forward ([`rank`]): `sent` → `delivered` / `undelivered` /
//! `failed`, and the three outcomes never replace one another, so late and out-of-order callbacks
//! cannot regress a message.

use comms_domain::messages::{DeliveryState, OptOutState};
use uuid::Uuid;

/// A provider that sends status callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Twilio,
    Sendgrid,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Twilio => "twilio",
            Provider::Sendgrid => "sendgrid",
        }
    }

    /// The channel whose messages this provider carries.
    pub fn channel(self) -> &'static str {
        match self {
            Provider::Twilio => "sms",
            Provider::Sendgrid => "email",
        }
    }
}

/// The delivery state an event moves a message to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Sent,
    Delivered,
    Undelivered,
    Failed,
}

impl Target {
    /// The delivery state a message moves to.
    pub fn state(self) -> DeliveryState {
        match self {
            Target::Sent => DeliveryState::Sent,
            Target::Delivered => DeliveryState::Delivered,
            Target::Undelivered => DeliveryState::Undelivered,
            Target::Failed => DeliveryState::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.state().as_str()
    }

    pub fn is_failure(self) -> bool {
        matches!(self, Target::Undelivered | Target::Failed)
    }
}

/// How far along a delivery state is. `None` for states a callback never changes: `sending`
/// (the sender has not recorded the dispatch yet; the callback waits) and `blocked`/`cancelled`
/// (never dispatched).
pub fn rank(state: &str) -> Option<u8> {
    state
        .parse::<DeliveryState>()
        .ok()
        .and_then(DeliveryState::callback_rank)
}

fn target_rank(target: Target) -> u8 {
    match target {
        Target::Sent => 1,
        _ => 2,
    }
}

/// The state `current` moves to under `target`, if it moves at all.
pub fn advance(current: &str, target: Target) -> Option<Target> {
    let from = rank(current)?;
    (target_rank(target) > from).then_some(target)
}

/// What an event does to the recipient's consent on the message's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentChange {
    /// Never send again to this address (hard bounce, spam report, invalid address).
    Suppressed,
    /// The recipient opted out (unsubscribe, STOP / Twilio 21610).
    OptedOut,
}

impl ConsentChange {
    /// The opt-out state the message records.
    pub fn opt_out_state(self) -> OptOutState {
        match self {
            ConsentChange::Suppressed => OptOutState::Suppressed,
            ConsentChange::OptedOut => OptOutState::OptedOut,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.opt_out_state().as_str()
    }
}

/// How to find the message an event is about, most specific first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// Our own message id, echoed back by the provider (SendGrid `custom_args`).
    pub message_id: Option<Uuid>,
    /// The provider's id for the message (Twilio `MessageSid`, SendGrid `X-Message-Id`).
    pub provider_message_id: Option<String>,
    /// The recipient address, only for events that carry no id at all (asynchronous bounces).
    pub recipient: Option<String>,
}

/// One status event, ready to apply.
#[derive(Debug, Clone)]
pub struct ProviderEvent {
    pub provider: Provider,
    /// The provider's identity of this event, the dedupe key.
    pub event_key: String,
    /// The provider's own name for what happened (`delivered`, `bounce`, `undelivered` …).
    pub status: String,
    pub lookup: Lookup,
    /// The canonical state this event means, if any (`None` for progress like `queued`).
    pub target: Option<Target>,
    /// An open, click or read: proof of delivery, never a regression.
    pub engagement: bool,
    pub consent: Option<ConsentChange>,
    /// The provider's reason, in words (error code and text, SMTP answer).
    pub reason: Option<String>,
    /// What the owner should do, for failures and consent changes.
    pub next_action: Option<&'static str>,
    /// The event asks a person to look even without a state or consent change.
    pub needs_owner: bool,
    /// Safe structured detail for the timeline (codes and types, never addresses or bodies).
    pub detail: serde_json::Value,
    /// The raw payload of this event, kept in `internal.provider_payloads` only.
    pub raw: Vec<u8>,
}

impl ProviderEvent {
    /// The state an engagement implies, or the event's own target.
    pub fn effective_target(&self) -> Option<Target> {
        self.target.or(self.engagement.then_some(Target::Delivered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward() {
        assert_eq!(advance("sent", Target::Delivered), Some(Target::Delivered));
        assert_eq!(advance("sent", Target::Failed), Some(Target::Failed));
        assert_eq!(advance("delivered", Target::Sent), None);
        assert_eq!(advance("delivered", Target::Failed), None);
        assert_eq!(advance("failed", Target::Delivered), None);
        assert_eq!(advance("sent", Target::Sent), None);
        assert_eq!(
            advance("retrying", Target::Delivered),
            Some(Target::Delivered)
        );
        assert_eq!(advance("blocked", Target::Delivered), None);
        assert_eq!(advance("sending", Target::Delivered), None);
        assert_eq!(
            advance("unknown_delivery", Target::Delivered),
            Some(Target::Delivered)
        );
        assert_eq!(advance("unknown_delivery", Target::Sent), None);
    }
}
