//! [`Book::answer`]: what a provider's answer means for the message, pure, as the last rule of
//! the book. [`crate::outcomes::record_dispatch`] records it (on both paths: the group path
//! records its acceptances together, everything else through it).

use std::time::Duration;

use super::Book;
use crate::providers::Dispatch;

/// What becomes of a dispatched message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted: `sent`, with the provider's id for later status callbacks.
    Sent {
        provider: &'static str,
        provider_message_id: String,
    },
    /// Failed for now, attempt `attempt` of `max`: retried by the broker.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
        maybe_sent: bool,
        max: i32,
    },
    /// Failed for good (`retries_exhausted`, `provider_rejected`, `opted_out`), for its owner.
    Fail {
        reason: String,
        next_action: &'static str,
        /// The recipient unsubscribed at the provider: the contact is opted out on the channel.
        opted_out: bool,
    },
}

impl Book<'_> {
    /// What the provider's `dispatch` answer to attempt `attempt` means.
    pub fn answer(&self, dispatch: Dispatch, attempt: i32) -> Answer {
        match dispatch {
            Dispatch::Sent {
                provider,
                provider_message_id,
            } => Answer::Sent {
                provider,
                provider_message_id,
            },
            Dispatch::Transient {
                reason,
                retry_after,
                maybe_sent,
            } => {
                let max = i32::try_from(self.settings.sender.max_attempts).unwrap_or(i32::MAX);
                if attempt >= max {
                    return Answer::Fail {
                        reason: format!("retries_exhausted: {reason}"),
                        next_action: "check the provider and the address, then send again with a new idempotency key",
                        opted_out: false,
                    };
                }
                Answer::Retry {
                    reason,
                    retry_after,
                    maybe_sent,
                    max,
                }
            }
            Dispatch::Permanent {
                opted_out: true, ..
            } => Answer::Fail {
                reason: "opted_out".into(),
                next_action: "the recipient unsubscribed at the provider: do not contact on this channel",
                opted_out: true,
            },
            Dispatch::Permanent { reason, .. } => Answer::Fail {
                reason: format!("provider_rejected: {reason}"),
                next_action: "correct the address or content, then send again with a new idempotency key",
                opted_out: false,
            },
        }
    }
}
