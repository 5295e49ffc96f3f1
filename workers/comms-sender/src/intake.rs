//! The sender's door: a delivery becomes a valid send request for the queue it arrived on, or a
//! rejection that names why.
//!
//! Both the one-message path and the group path take requests through here, so they refuse
//! exactly the same deliveries with exactly the same reasons. Besides the contract's own
//! validation, the door checks what only a consumer can see: that the request arrived on the
//! queue of its `channel`. A request published with routing key `send.email` but `channel: sms`
//! would otherwise be sent as an SMS through the email queue's consumer, out of reach of whatever
//! the publisher meant by the key (docs/contract.md, "Publishing a request").

use comms_domain::contract::{REASON_ROUTING_KEY_MISMATCH, ValidSendRequest, parse_send_request};
use comms_runtime::runtime::{Incoming, Outcome};

/// The delivery's request, or the rejection to settle it with.
pub fn accept(incoming: &Incoming) -> Result<ValidSendRequest, Outcome> {
    let request = parse_send_request(&incoming.body)
        .map_err(|errors| Outcome::reject(format!("{}: {errors}", errors.reason_code())))?;
    match queue_channel(&incoming.queue) {
        Some(channel) if channel != request.channel.as_str() => {
            // Retries come back with a delay-tier key; only a `send.*` key is the publisher's.
            let published = if incoming.routing_key.starts_with("send.") {
                format!("routing key `{}`", incoming.routing_key)
            } else {
                format!("routing key `send.{channel}`")
            };
            Err(Outcome::reject(format!(
                "{REASON_ROUTING_KEY_MISMATCH}: published with {published} but channel is `{}`; \
                 publish it with routing key `{}`",
                request.channel,
                request.routing_key()
            )))
        }
        _ => Ok(request),
    }
}

/// The channel a send queue serves: `sms` for `comms.send.sms` (with any namespace prefix).
fn queue_channel(queue: &str) -> Option<&str> {
    queue.rsplit_once("comms.send.").map(|(_, channel)| channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(queue: &str, routing_key: &str, channel: &str) -> Incoming {
        let body = serde_json::json!({
            "idempotency_key": "k",
            "channel": channel,
            "kind": "transactional",
            "recipient": { "contact_id": "123e4567-e89b-12d3-a456-426614174000" },
            "template": { "name": "welcome", "vars": {} },
            "record": { "type": "lead", "id": "123e4567-e89b-12d3-a456-426614174000" },
            "owner": "ops",
            "source": "crm",
            "trigger": "lead.created"
        });
        Incoming {
            queue: queue.into(),
            routing_key: routing_key.into(),
            body: body.to_string().into_bytes(),
            headers: Default::default(),
            message_id: None,
            redelivered: false,
            retry_attempt: 0,
        }
    }

    #[test]
    fn a_request_on_its_channels_queue_is_accepted() {
        let ok = accept(&delivery("t1.comms.send.sms", "send.sms", "sms"));
        assert!(ok.is_ok());
    }

    #[test]
    fn a_request_on_another_channels_queue_is_refused_with_its_reason() {
        let refused = accept(&delivery("t1.comms.send.email", "send.email", "sms"));
        let Err(Outcome::Reject { reason }) = refused else {
            panic!("refused: {refused:?}");
        };
        assert_eq!(
            reason,
            "routing_key_mismatch: published with routing key `send.email` but channel is `sms`; \
             publish it with routing key `send.sms`"
        );
        let retried = accept(&delivery("comms.send.email", "5s.comms.send.email", "sms"));
        assert!(
            matches!(retried, Err(Outcome::Reject { reason }) if reason.contains("`send.email`"))
        );
    }
}
