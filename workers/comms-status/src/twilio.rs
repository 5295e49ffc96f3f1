//! Twilio status callbacks to [`ProviderEvent`]s. The body is read by its content type through
//! `comms_domain::webhook_body` (a form, or JSON), exactly as the gateway read it to verify the
//! signature; this module sees only the fields.
//!
//! | `MessageStatus` | canonical |
//! |---|---|
//! | `accepted`, `scheduled`, `queued`, `sending` | progress, no change |
//! | `sent` | `sent` |
//! | `delivered` | `delivered` |
//! | `undelivered` | `undelivered`, `ErrorCode` as the reason |
//! | `failed`, `canceled` | `failed`, `ErrorCode` as the reason |
//! | `read` | engagement (implies `delivered`) |
//!
//! `ErrorCode` 21610 (the recipient replied STOP) opts the number out, whatever the status.
//! The dedupe key is `MessageSid:MessageStatus`: Twilio sends each status of a message once, and
//! a retried callback carries the same pair.

use comms_domain::webhook_body::Fields;
use serde_json::json;

use crate::event::{ConsentChange, Lookup, Provider, ProviderEvent, Target};

/// Twilio's "recipient replied STOP" error.
pub const UNSUBSCRIBED_RECIPIENT: &str = "21610";

fn describe(code: &str) -> Option<&'static str> {
    Some(match code {
        "21610" => "the recipient replied STOP (unsubscribed)",
        "21211" => "the 'To' number is not a valid phone number",
        "21614" => "the 'To' number is not a mobile number",
        "30003" => "unreachable destination handset",
        "30004" => "message blocked by the recipient or carrier",
        "30005" => "unknown destination handset",
        "30006" => "landline or unreachable carrier",
        "30007" => "message filtered by the carrier",
        "30008" => "unknown error",
        _ => return None,
    })
}

/// Parses one status callback: its `fields` (as read from `raw`, which is kept).
pub fn parse(fields: &Fields, raw: &[u8]) -> Result<ProviderEvent, String> {
    let mut sid = None;
    let mut status = None;
    let mut error_code = None;
    for (name, value) in &fields.fields {
        match name.as_str() {
            "MessageSid" => sid = Some(value.clone()),
            "SmsSid" if sid.is_none() => sid = Some(value.clone()),
            "MessageStatus" => status = Some(value.clone()),
            "SmsStatus" if status.is_none() => status = Some(value.clone()),
            "ErrorCode" if !value.trim().is_empty() => error_code = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let sid = sid
        .filter(|s| !s.trim().is_empty())
        .ok_or("the callback has no MessageSid")?;
    let status = status
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .ok_or("the callback has no MessageStatus")?;

    let reason = error_code.as_deref().map(|code| match describe(code) {
        Some(text) => format!("twilio error {code}: {text}"),
        None => format!("twilio error {code}"),
    });
    let (target, engagement) = match status.as_str() {
        "sent" => (Some(Target::Sent), false),
        "delivered" => (Some(Target::Delivered), false),
        "undelivered" => (Some(Target::Undelivered), false),
        "failed" | "canceled" => (Some(Target::Failed), false),
        "read" => (None, true),
        _ => (None, false),
    };
    let opted_out = error_code.as_deref() == Some(UNSUBSCRIBED_RECIPIENT);
    let next_action = if opted_out {
        Some("the recipient replied STOP: do not text this number unless they opt back in (START)")
    } else {
        match target {
            Some(Target::Undelivered) => Some(
                "the carrier could not deliver: check the number with the contact, then send again with a new idempotency key",
            ),
            Some(Target::Failed) => Some(
                "Twilio could not send: check the error and the number, then send again with a new idempotency key",
            ),
            _ => None,
        }
    };
    Ok(ProviderEvent {
        provider: Provider::Twilio,
        event_key: format!("{sid}:{status}"),
        reason: reason.or_else(|| (status == "canceled").then(|| "twilio: canceled".into())),
        detail: json!({ "provider_status": status, "error_code": error_code }),
        status,
        lookup: Lookup {
            provider_message_id: Some(sid),
            ..Lookup::default()
        },
        target,
        engagement,
        consent: opted_out.then_some(ConsentChange::OptedOut),
        next_action,
        needs_owner: false,
        raw: raw.to_vec(),
    })
}

/// A form body, read as the handler reads one (for tests).
#[cfg(test)]
pub(crate) fn parse_form(body: &[u8]) -> Result<ProviderEvent, String> {
    let form = Some(comms_domain::webhook_body::FORM);
    let fields =
        comms_domain::webhook_body::twilio_fields(form, body).map_err(|e| e.to_string())?;
    parse(&fields, body)
}

#[cfg(test)]
mod tests {
    use comms_domain::webhook_body::{JSON, twilio_fields};

    use super::*;

    use super::parse_form as parse;

    #[test]
    fn a_json_callback_is_read_as_json() {
        let body = br#"{"MessageSid":"SM5","MessageStatus":"undelivered","ErrorCode":30003}"#;
        let fields = twilio_fields(Some(JSON), body).expect("json");
        let event = super::parse(&fields, body).expect("parses");
        assert_eq!(event.target, Some(Target::Undelivered));
        assert!(event.reason.as_deref().is_some_and(|r| r.contains("30003")));
    }

    #[test]
    fn a_delivered_callback_maps_to_delivered() {
        let event = parse(b"SmsSid=SM1&SmsStatus=delivered&MessageStatus=delivered&To=%2B1555&MessageSid=SM1&AccountSid=AC1")
            .expect("parses");
        assert_eq!(event.target, Some(Target::Delivered));
        assert_eq!(event.event_key, "SM1:delivered");
        assert_eq!(event.lookup.provider_message_id.as_deref(), Some("SM1"));
    }

    #[test]
    fn error_21610_opts_the_number_out() {
        let event = parse(b"MessageSid=SM2&MessageStatus=failed&ErrorCode=21610").expect("parses");
        assert_eq!(event.target, Some(Target::Failed));
        assert_eq!(event.consent, Some(ConsentChange::OptedOut));
        assert!(event.reason.as_deref().is_some_and(|r| r.contains("21610")));
    }

    #[test]
    fn read_is_engagement_and_queued_is_progress() {
        let read = parse(b"MessageSid=SM3&MessageStatus=read").expect("parses");
        assert!(read.engagement);
        assert_eq!(read.effective_target(), Some(Target::Delivered));
        let queued = parse(b"MessageSid=SM3&MessageStatus=queued").expect("parses");
        assert_eq!(queued.effective_target(), None);
    }

    #[test]
    fn a_callback_without_sid_or_status_is_refused() {
        assert!(parse(b"MessageStatus=sent").is_err());
        assert!(parse(b"MessageSid=SM4").is_err());
    }
}
