//! Fault injection: tests arm faults over `POST /sandbox/faults` to make the next matching sends fail
//! (429 with `Retry-After`, 5xx, a hang, a permanent provider error) or to change the delivery
//! callbacks a matching message gets (undelivered SMS, bounced email) without failing the send.

use serde::{Deserialize, Serialize};

/// Which channel a fault applies to (`null` in the fault JSON means both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Email,
}

/// What a test asks for, as posted to `POST /sandbox/faults`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// `sms`, `email`, or `None` for both.
    #[serde(default)]
    pub channel: Option<Channel>,
    /// Exact recipient (phone or email, compared case-insensitively); `None` matches everyone.
    #[serde(default)]
    pub recipient: Option<String>,
    /// HTTP status the send answers with (400..=599). With neither `status` nor `timeout_ms` the
    /// fault does not fail the send and only shapes callbacks (see `callback_status`).
    #[serde(default)]
    pub status: Option<u16>,
    /// Seconds for the `Retry-After` header (sent on 429 and 503).
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Hang this long before answering (`status`, or 500 when unset), so the client can time out.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// With `timeout_ms`: the send is accepted and recorded (its callbacks follow) and the success
    /// answer comes only after the hang, as when a provider took a request and the connection
    /// failed before its answer, so a client that timed out cannot know it was sent.
    #[serde(default)]
    pub accept: bool,
    /// Twilio error code for the body (e.g. 21610); defaults from the status.
    #[serde(default)]
    pub error_code: Option<u32>,
    /// Error message (or bounce reason); defaults per provider and code.
    #[serde(default)]
    pub message: Option<String>,
    /// How many matching requests (or messages) this fault applies to; `None` = until cleared.
    #[serde(default)]
    pub times: Option<u32>,
    /// Outcome reported by callbacks for matching accepted messages: `delivered`, `undelivered` or
    /// `failed` (SMS); `delivered`, `bounce`, `blocked` or `dropped` (email).
    #[serde(default)]
    pub callback_status: Option<CallbackStatus>,
}

/// The final delivery outcome the callbacks report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackStatus {
    Delivered,
    Undelivered,
    Failed,
    Bounce,
    Blocked,
    Dropped,
}

impl CallbackStatus {
    pub(crate) fn applies_to(self, channel: Channel) -> bool {
        match self {
            Self::Delivered => true,
            Self::Undelivered | Self::Failed => channel == Channel::Sms,
            Self::Bounce | Self::Blocked | Self::Dropped => channel == Channel::Email,
        }
    }
}

/// An armed fault: the spec plus its id and how many uses remain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub id: String,
    #[serde(flatten)]
    pub spec: FaultSpec,
}

impl Fault {
    /// Whether this fault fails the API call (as opposed to only shaping callbacks).
    pub fn fails_request(&self) -> bool {
        self.spec.status.is_some() || self.spec.timeout_ms.is_some()
    }

    fn matches(&self, channel: Channel, recipient: &str) -> bool {
        self.spec.channel.is_none_or(|c| c == channel)
            && self
                .spec
                .recipient
                .as_deref()
                .is_none_or(|r| r.trim().eq_ignore_ascii_case(recipient.trim()))
    }
}

/// The callback outcome chosen for one accepted message.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CallbackOutcome {
    pub status: CallbackStatus,
    pub error_code: Option<u32>,
    pub message: Option<String>,
}

/// Armed faults in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    pub(crate) faults: Vec<Fault>,
    next_id: u64,
}

impl FaultBook {
    pub(crate) fn add(&mut self, spec: FaultSpec) -> Fault {
        self.next_id += 1;
        let fault = Fault {
            id: format!("fault-{}", self.next_id),
            spec,
        };
        self.faults.push(fault.clone());
        fault
    }

    /// Takes one use of the first request-failing fault matching any of `recipients`.
    pub fn take_request_fault(&mut self, channel: Channel, recipients: &[&str]) -> Option<Fault> {
        self.take_first(|f| f.fails_request() && recipients.iter().any(|r| f.matches(channel, r)))
    }

    /// Takes one use of the first callback-only fault matching `recipient`.
    pub fn take_callback_outcome(
        &mut self,
        channel: Channel,
        recipient: &str,
    ) -> Option<CallbackOutcome> {
        let fault = self.take_first(|f| {
            !f.fails_request()
                && f.spec
                    .callback_status
                    .is_some_and(|s| s.applies_to(channel))
                && f.matches(channel, recipient)
        })?;
        Some(CallbackOutcome {
            status: fault.spec.callback_status?,
            error_code: fault.spec.error_code,
            message: fault.spec.message,
        })
    }

    fn take_first(&mut self, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let index = self.faults.iter().position(pred)?;
        let fault = self.faults[index].clone();
        if let Some(times) = self.faults[index].spec.times.as_mut() {
            *times = times.saturating_sub(1);
            if *times == 0 {
                self.faults.remove(index);
            }
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(status: Option<u16>, times: Option<u32>) -> FaultSpec {
        FaultSpec {
            status,
            times,
            ..FaultSpec::default()
        }
    }

    #[test]
    fn faults_match_in_order_and_are_consumed() {
        let mut book = FaultBook::default();
        book.add(spec(Some(429), Some(1)));
        book.add(spec(Some(500), None));
        let first = book.take_request_fault(Channel::Sms, &["+15005550006"]);
        assert_eq!(first.and_then(|f| f.spec.status), Some(429));
        for _ in 0..3 {
            let next = book.take_request_fault(Channel::Email, &["a@example.com"]);
            assert_eq!(next.and_then(|f| f.spec.status), Some(500));
        }
    }

    #[test]
    fn recipient_and_channel_filters_apply() {
        let mut book = FaultBook::default();
        book.add(FaultSpec {
            channel: Some(Channel::Email),
            recipient: Some("Bob@Example.com".into()),
            callback_status: Some(CallbackStatus::Bounce),
            ..FaultSpec::default()
        });
        assert!(
            book.take_request_fault(Channel::Email, &["bob@example.com"])
                .is_none()
        );
        assert!(
            book.take_callback_outcome(Channel::Sms, "bob@example.com")
                .is_none()
        );
        assert!(
            book.take_callback_outcome(Channel::Email, "alice@example.com")
                .is_none()
        );
        let outcome = book.take_callback_outcome(Channel::Email, "bob@example.com");
        assert_eq!(outcome.map(|o| o.status), Some(CallbackStatus::Bounce));
    }
}
