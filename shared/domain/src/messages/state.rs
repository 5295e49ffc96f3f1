//! The states a message can be in, as types: its delivery state, its reply state and its opt-out
//! state, each mapped to the text the database stores and its CHECK constraint allows
//! (`migrations/0001_foundation.sql`; a test in `tests/tests/it/messages_state.rs` keeps the two
//! in agreement).
//!
//! Workers name states through these enums instead of string literals, so a state that does not
//! exist does not compile, and the groups of states the rules talk about (still dispatchable,
//! final, how far along for a callback) are defined once, here.

use std::fmt;
use std::str::FromStr;

/// A state name the database holds that this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} state {value:?}")]
pub struct UnknownState {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! text_states {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every state.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text the database stores.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownState { kind: $kind, value: other.to_string() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_states!(
    /// Where a message is on its way to the recipient (`comms.messages.delivery_state`).
    DeliveryState, "delivery" {
        /// Recorded, not yet decided.
        Received = "received",
        /// Waiting for its time: `send_after`, quiet hours.
        Deferred = "deferred",
        /// Waiting for the owner's approval (or an AI draft's review).
        AwaitingApproval = "awaiting_approval",
        /// Held by the pause switch until a resume releases it.
        Held = "held",
        /// A transient failure; it will be tried again.
        Retrying = "retrying",
        /// Claimed for a provider call whose outcome is not recorded yet.
        Sending = "sending",
        /// Accepted by the provider.
        Sent = "sent",
        /// The provider reports it delivered.
        Delivered = "delivered",
        /// The provider reports it could not be delivered.
        Undelivered = "undelivered",
        /// It failed for good (permanent error, retries exhausted, outcome unknown).
        Failed = "failed",
        /// A rule refused it before any provider saw it (consent, template, approval, wording).
        Blocked = "blocked",
        /// Withdrawn before it was sent (a rolled-back sequence step, a superseded notice).
        Cancelled = "cancelled",
        /// Sent, but no final word came and the provider could not tell (reconciliation); a late
        /// provider event still moves it on, and its owner has a task.
        UnknownDelivery = "unknown_delivery",
    }
);

text_states!(
    /// Whether the recipient answered (`comms.messages.reply_state`).
    ReplyState, "reply" {
        None = "none",
        Replied = "replied",
        AutoReply = "auto_reply",
    }
);

text_states!(
    /// Whether the recipient opted out through this message (`comms.messages.opt_out_state`).
    OptOutState, "opt-out" {
        None = "none",
        OptedOut = "opted_out",
        Suppressed = "suppressed",
    }
);

impl DeliveryState {
    /// The states from which a message may still be dispatched.
    pub const DISPATCHABLE: &'static [DeliveryState] = &[
        DeliveryState::Received,
        DeliveryState::Deferred,
        DeliveryState::AwaitingApproval,
        DeliveryState::Held,
        DeliveryState::Retrying,
    ];

    /// The names of [`Self::DISPATCHABLE`], to bind as a SQL `text[]`.
    pub const DISPATCHABLE_NAMES: &'static [&'static str] = &[
        "received",
        "deferred",
        "awaiting_approval",
        "held",
        "retrying",
    ];

    /// The states a message does not leave, where its life (and its enqueue-to-final time) ends.
    pub const FINAL: &'static [DeliveryState] = &[
        DeliveryState::Delivered,
        DeliveryState::Undelivered,
        DeliveryState::Failed,
        DeliveryState::Blocked,
    ];

    /// Whether a message in this state may still be dispatched.
    pub fn is_dispatchable(self) -> bool {
        Self::DISPATCHABLE.contains(&self)
    }

    /// Whether this state ends a message's life for the enqueue-to-final metric.
    pub fn is_final(self) -> bool {
        Self::FINAL.contains(&self)
    }

    /// How far along the state is for a provider callback: before dispatch 0, `sent` 1, a
    /// provider's final word 2. `None` for the states a callback never changes: `sending` (the
    /// sender has not recorded the dispatch yet; the callback waits) and `blocked`/`cancelled`
    /// (never dispatched).
    pub fn callback_rank(self) -> Option<u8> {
        match self {
            DeliveryState::Received
            | DeliveryState::Deferred
            | DeliveryState::AwaitingApproval
            | DeliveryState::Held
            | DeliveryState::Retrying => Some(0),
            // `unknown_delivery`: the reconciler could not learn the outcome; a late event still
            // moves it forward, exactly like `sent`.
            DeliveryState::Sent | DeliveryState::UnknownDelivery => Some(1),
            DeliveryState::Delivered | DeliveryState::Undelivered | DeliveryState::Failed => {
                Some(2)
            }
            DeliveryState::Sending | DeliveryState::Blocked | DeliveryState::Cancelled => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_text() {
        for state in DeliveryState::ALL {
            assert_eq!(state.as_str().parse::<DeliveryState>(), Ok(*state));
        }
        for state in ReplyState::ALL {
            assert_eq!(state.as_str().parse::<ReplyState>(), Ok(*state));
        }
        for state in OptOutState::ALL {
            assert_eq!(state.as_str().parse::<OptOutState>(), Ok(*state));
        }
    }

    #[test]
    fn an_unknown_state_is_named_in_the_error() {
        let error = "posted"
            .parse::<DeliveryState>()
            .expect_err("no such state");
        assert_eq!(error.to_string(), "unknown delivery state \"posted\"");
    }

    #[test]
    fn dispatchable_names_are_the_dispatchable_states() {
        let names: Vec<&str> = DeliveryState::DISPATCHABLE
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(names, DeliveryState::DISPATCHABLE_NAMES);
    }

    #[test]
    fn final_states_are_never_dispatchable_and_dispatch_rank_is_before_sent() {
        for state in DeliveryState::ALL {
            assert!(!(state.is_final() && state.is_dispatchable()), "{state}");
            if state.is_dispatchable() {
                assert_eq!(state.callback_rank(), Some(0), "{state}");
            }
        }
        assert_eq!(DeliveryState::Sent.callback_rank(), Some(1));
        assert_eq!(DeliveryState::Sending.callback_rank(), None);
    }
}
