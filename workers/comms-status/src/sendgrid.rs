//! SendGrid Event Webhook batches (a JSON array) to [`ProviderEvent`]s.
//!
//! | `event` | canonical | consent |
//! |---|---|---|
//! | `processed`, `deferred` | progress, no change | |
//! | `delivered` | `delivered` | |
//! | `bounce` (`type` `bounce`) | `failed` | suppressed (hard bounce) |
//! | `bounce` (`type` `blocked`) | `undelivered` | |
//! | `dropped` | `failed` | suppressed for `Bounced Address`, `Spam Reporting Address`, `Invalid`; opted out for `Unsubscribed Address` |
//! | `open`, `click` | engagement (implies `delivered`) | |
//! | `spamreport` | engagement | suppressed |
//! | `unsubscribe`, `group_unsubscribe` | engagement | opted out |
//! | `group_resubscribe` | engagement; the owner is asked to review consent | |
//!
//! Messages are found by our id in the `comms_message_id` custom argument (SendGrid copies custom
//! args to the top level of each event), then by `sg_message_id`, whose part before the first `.`
//! is the `X-Message-Id` the send returned, then — for asynchronous bounces that carry neither — by
//! the recipient address. The dedupe key is `sg_event_id` (SendGrid's own, for deduplication).

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::event::{ConsentChange, Lookup, Provider, ProviderEvent, Target};

/// The custom argument the sender puts our message id in.
pub const MESSAGE_ID_ARG: &str = "comms_message_id";

/// Parses one Event Webhook body into its events, in order.
pub fn parse(body: &[u8]) -> Result<Vec<ProviderEvent>, String> {
    let events: Vec<Value> = match serde_json::from_slice(body) {
        Ok(Value::Array(events)) => events,
        Ok(_) => return Err("the body is not a JSON array of events".into()),
        Err(e) => return Err(format!("the body is not JSON: {e}")),
    };
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| match event {
            Value::Object(fields) => Ok(one(fields)),
            _ => Err(format!("event {index} is not a JSON object")),
        })
        .collect()
}

fn text<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    fields
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn our_message_id(fields: &Map<String, Value>) -> Option<Uuid> {
    let nested = fields
        .get("custom_args")
        .and_then(Value::as_object)
        .and_then(|args| text(args, MESSAGE_ID_ARG));
    text(fields, MESSAGE_ID_ARG)
        .or(nested)
        .and_then(|id| Uuid::parse_str(id.trim()).ok())
}

fn one(fields: Map<String, Value>) -> ProviderEvent {
    let status = text(&fields, "event")
        .unwrap_or("unknown")
        .to_ascii_lowercase();
    let raw = serde_json::to_vec(&fields).unwrap_or_default();
    let event_key = match text(&fields, "sg_event_id") {
        Some(id) => id.to_string(),
        None => {
            let digest: String = Sha256::digest(&raw)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("sha256:{digest}")
        }
    };
    let provider_message_id = text(&fields, "sg_message_id")
        .and_then(|id| id.split('.').next())
        .map(str::to_string);
    let message_id = our_message_id(&fields);
    let recipient = (message_id.is_none() && provider_message_id.is_none())
        .then(|| text(&fields, "email").map(str::to_string))
        .flatten();
    let bounce_type = text(&fields, "type")
        .unwrap_or("bounce")
        .to_ascii_lowercase();
    let smtp = text(&fields, "reason").or(text(&fields, "response"));
    let reason = smtp.map(|why| match text(&fields, "status") {
        Some(code) => format!("sendgrid {status}: {code} {why}"),
        None => format!("sendgrid {status}: {why}"),
    });

    let mut event = ProviderEvent {
        provider: Provider::Sendgrid,
        event_key,
        status: status.clone(),
        lookup: Lookup {
            message_id,
            provider_message_id,
            recipient,
        },
        target: None,
        engagement: false,
        consent: None,
        reason,
        next_action: None,
        needs_owner: false,
        detail: json!({
            "provider_status": status,
            "sg_event_id": text(&fields, "sg_event_id"),
            "type": text(&fields, "type"),
            "smtp_status": text(&fields, "status"),
            "event_timestamp": fields.get("timestamp"),
        }),
        raw,
    };
    match status.as_str() {
        "delivered" => event.target = Some(Target::Delivered),
        "bounce" if bounce_type == "blocked" => {
            event.target = Some(Target::Undelivered);
            event.next_action = Some(
                "the receiving server blocked the email: check the content and sender reputation, then send again with a new idempotency key",
            );
        }
        "bounce" => {
            event.target = Some(Target::Failed);
            event.consent = Some(ConsentChange::Suppressed);
            event.next_action = Some(
                "the address bounced and is suppressed: get a working email address from the contact",
            );
        }
        "dropped" => {
            event.target = Some(Target::Failed);
            let why = text(&fields, "reason")
                .unwrap_or_default()
                .to_ascii_lowercase();
            event.consent = if why.contains("unsubscribed address") {
                Some(ConsentChange::OptedOut)
            } else if why.contains("bounced address")
                || why.contains("spam reporting address")
                || why == "invalid"
            {
                Some(ConsentChange::Suppressed)
            } else {
                None
            };
            event.next_action = Some(
                "SendGrid dropped the email without sending it: check the reason and the address, then send again with a new idempotency key",
            );
        }
        "open" | "click" => event.engagement = true,
        "spamreport" => {
            event.engagement = true;
            event.consent = Some(ConsentChange::Suppressed);
            event.next_action = Some(
                "the recipient reported the email as spam and is suppressed: review the content and the contact's consent",
            );
        }
        "unsubscribe" | "group_unsubscribe" => {
            event.engagement = true;
            event.consent = Some(ConsentChange::OptedOut);
            event.next_action =
                Some("the recipient unsubscribed: do not email them unless they opt back in");
        }
        "group_resubscribe" => {
            event.engagement = true;
            event.needs_owner = true;
            event.next_action = Some(
                "the recipient resubscribed at SendGrid: review and record their consent before emailing them again",
            );
        }
        _ => {}
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hard_bounce_fails_and_suppresses() {
        let id = Uuid::new_v4();
        let body = format!(
            r#"[{{"email":"a@example.com","event":"bounce","type":"bounce","status":"5.1.1","reason":"550 no such user","sg_event_id":"e1","sg_message_id":"XMSG.filter0001.1.2.0","comms_message_id":"{id}"}}]"#
        );
        let events = parse(body.as_bytes()).expect("parses");
        let event = &events[0];
        assert_eq!(event.target, Some(Target::Failed));
        assert_eq!(event.consent, Some(ConsentChange::Suppressed));
        assert_eq!(event.lookup.message_id, Some(id));
        assert_eq!(event.lookup.provider_message_id.as_deref(), Some("XMSG"));
        assert_eq!(event.lookup.recipient, None);
        assert_eq!(event.event_key, "e1");
        assert!(event.reason.as_deref().is_some_and(|r| r.contains("5.1.1")));
    }

    #[test]
    fn a_block_is_undelivered_without_suppression() {
        let events = parse(
            br#"[{"event":"bounce","type":"blocked","sg_event_id":"e2","sg_message_id":"M.1"}]"#,
        )
        .expect("parses");
        assert_eq!(events[0].target, Some(Target::Undelivered));
        assert_eq!(events[0].consent, None);
    }

    #[test]
    fn an_asynchronous_bounce_falls_back_to_the_address() {
        let events = parse(br#"[{"event":"bounce","email":"a@example.com"}]"#).expect("parses");
        assert_eq!(events[0].lookup.recipient.as_deref(), Some("a@example.com"));
        assert!(events[0].event_key.starts_with("sha256:"));
    }

    #[test]
    fn engagement_and_opt_outs() {
        let events = parse(
            br#"[{"event":"open","sg_event_id":"o"},{"event":"unsubscribe","sg_event_id":"u"},{"event":"dropped","reason":"Unsubscribed Address","sg_event_id":"d"}]"#,
        )
        .expect("parses");
        assert!(events[0].engagement && events[0].consent.is_none());
        assert_eq!(events[1].consent, Some(ConsentChange::OptedOut));
        assert_eq!(events[2].consent, Some(ConsentChange::OptedOut));
        assert_eq!(events[2].target, Some(Target::Failed));
    }

    #[test]
    fn a_body_that_is_not_an_array_is_refused() {
        assert!(parse(b"{}").is_err());
        assert!(parse(b"nope").is_err());
        assert!(parse(b"[1]").is_err());
    }
}
