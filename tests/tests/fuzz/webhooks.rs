//! Provider webhooks as the gateway and the workers read them: the body reader that decides
//! which bytes a signature covers, the Twilio status and SendGrid event parsers of the status
//! worker, and the inbound parsers of the replies worker. Anything a provider (or an attacker)
//! can send is read into fields or refused with a named code, never a panic.

use comms_domain::webhook_body::{self, FORM, JSON, MULTIPART};
use proptest::prelude::*;

use crate::inputs::{hostile, seeds};

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(FORM.to_string())),
        Just(Some(format!("{FORM}; charset=utf-8"))),
        Just(Some(format!("{FORM}; charset=latin1"))),
        Just(Some(JSON.to_string())),
        Just(Some(format!("{MULTIPART}; boundary=xYzZY"))),
        Just(Some(MULTIPART.to_string())),
        Just(Some("text/plain".to_string())),
        ".{0,40}".prop_map(Some),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn the_twilio_body_reader_reads_or_names_the_problem(
        body in hostile(seeds("twilio_form")),
        content_type in content_type(),
    ) {
        match webhook_body::twilio_fields(content_type.as_deref(), &body) {
            Ok(fields) => prop_assert!(webhook_body::TWILIO.contains(&fields.format)),
            Err(error) => {
                prop_assert!(["unsupported_content_type", "invalid_body"].contains(&error.code()));
                prop_assert!(!error.to_string().is_empty());
            }
        }
    }

    #[test]
    fn the_twilio_status_parser_never_panics(body in hostile(seeds("twilio_form"))) {
        if let Ok(fields) = webhook_body::twilio_fields(Some(FORM), &body)
            && let Ok(event) = comms_status::twilio::parse(&fields, &body)
        {
            prop_assert!(!event.event_key.is_empty());
        }
    }

    #[test]
    fn the_sendgrid_event_parser_reads_or_refuses(body in hostile(seeds("sendgrid_events"))) {
        match comms_status::sendgrid::parse(&body) {
            Ok(events) => prop_assert!(events.iter().all(|e| !e.event_key.is_empty())),
            Err(problem) => prop_assert!(!problem.is_empty()),
        }
    }

    #[test]
    fn the_inbound_parsers_read_or_name_the_problem(
        twilio in hostile(seeds("twilio_form")),
        sendgrid in hostile(seeds("sendgrid_inbound")),
        content_type in content_type(),
    ) {
        let rt = runtime();
        for (key, body) in [("inbound.twilio", &twilio), ("inbound.sendgrid", &sendgrid)] {
            if let Err(error) = rt.block_on(comms_replies::parse::parse(key, content_type.as_deref(), body)) {
                prop_assert!(!error.code().is_empty());
            }
        }
    }
}
