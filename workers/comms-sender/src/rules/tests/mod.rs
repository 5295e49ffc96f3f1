//! The rule book without a database: every reason code the rules give, from facts alone
//! ([`table`]), and what the rules prepare and how the gate decides.

mod in_flight;
mod table;

use chrono::{DateTime, NaiveTime, Utc};
use comms_domain::approvals::approval_hash;
use comms_domain::contract::{ValidSendRequest, parse_send_request};
use comms_domain::pause::switch::Verdict;
use comms_domain::pause::{ActivePause, Scope};
use comms_runtime::settings::Settings;
use serde_json::{Value, json};
use uuid::Uuid;

use super::facts::{Contact, Facts};
use super::{Book, Decision};
use crate::quiet_hours::Window;
use crate::render::TemplateRow;
use crate::store::Message;

fn book(settings: &Settings) -> Book<'_> {
    let at = |h| NaiveTime::from_hms_opt(h, 0, 0).expect("time");
    Book {
        settings,
        window: Window {
            opens: at(8),
            closes: at(21),
        },
        default_zone: chrono_tz::UTC,
    }
}

fn noon() -> DateTime<Utc> {
    "2026-11-30T12:00:00Z".parse().expect("time")
}

/// A transactional SMS to a known contact about a lead, with `changes` merged in.
fn request(changes: Value) -> ValidSendRequest {
    let mut body = json!({
        "idempotency_key": "k-1",
        "channel": "sms",
        "kind": "transactional",
        "recipient": { "contact_id": "123e4567-e89b-12d3-a456-426614174000" },
        "template": { "name": "welcome", "vars": { "name": "Ana" } },
        "record": { "type": "lead", "id": "123e4567-e89b-12d3-a456-426614174001" },
        "owner": "ops",
        "source": "crm",
        "trigger": "lead.created"
    });
    if let (Some(body), Some(changes)) = (body.as_object_mut(), changes.as_object()) {
        for (key, value) in changes {
            body.insert(key.clone(), value.clone());
        }
    }
    parse_send_request(body.to_string().as_bytes()).expect("a valid request")
}

fn message(state: &str) -> Message {
    Message {
        id: Uuid::nil(),
        idempotency_key: "k-1".into(),
        channel: "sms".into(),
        kind: "transactional".into(),
        contact_id: Uuid::nil(),
        recipient_address: "+14155552671".into(),
        delivery_state: state.into(),
        send_after: None,
        held_by_pause: None,
        created_at: noon(),
        updated_at: noon(),
        dispatch_claim: None,
        call_started_at: None,
    }
}

fn template(body: &str) -> TemplateRow {
    TemplateRow {
        name: "welcome".into(),
        version: 1,
        channel: "sms".into(),
        subject: None,
        body: body.into(),
        state: "approved".into(),
    }
}

/// A recorded, received message whose every fact lets it through.
fn facts() -> Facts {
    Facts {
        message: Some(message("received")),
        recorded: true,
        contact: Some(Contact {
            contact_id: Uuid::nil(),
            channel: "sms".into(),
            address: Some("+14155552671".into()),
            consent_state: Some("unknown".into()),
            time_zone: Some("UTC".into()),
        }),
        record_client: Some(Some(Uuid::nil())),
        template: Some(template("Hi {{ name }}")),
        ..Facts::default()
    }
}

fn hash_of_hi_ana() -> String {
    approval_hash(None, "Hi Ana")
}

/// The reason code (or the name of the decision, where it has none).
fn code(decision: &Decision) -> String {
    match decision {
        Decision::Settled => "settled".into(),
        Decision::InFlight { .. } => "in_flight".into(),
        Decision::Redispatch { .. } => "redispatch".into(),
        Decision::Unknown { reason, .. } => reason.split(':').next().unwrap_or_default().into(),
        Decision::Block { refusal, .. } => refusal.code.into(),
        Decision::PortalUnsafe { .. } => "portal_unsafe".into(),
        Decision::AwaitApproval { reason, .. } | Decision::Defer { reason, .. } => (*reason).into(),
        Decision::Dispatch(_) => "dispatch".into(),
        Decision::WaitForOlder => "wait_for_older".into(),
        Decision::Hold(_) => "held".into(),
        Decision::Blind { .. } => "blind".into(),
        Decision::Send(_) => "send".into(),
    }
}

fn set_consent(facts: &mut Facts, state: &str) {
    if let Some(contact) = facts.contact.as_mut() {
        contact.consent_state = Some(state.into());
    }
}

#[test]
fn consent_a_request_brings_is_kept_and_the_content_stored_whatever_the_decision() {
    let settings = Settings::default();
    let express =
        json!({ "basis": "express", "source": "web form", "captured_at": "2026-11-01T00:00:00Z" });
    let request = request(json!({ "kind": "outreach", "consent": express }));
    let mut facts = facts();
    let decision = book(&settings).decide(&request, &facts, noon());
    let Decision::Dispatch(prepared) = decision else {
        panic!("{decision:?}");
    };
    assert!(prepared.keep_consent);
    assert_eq!(prepared.content.map(|c| c.body).as_deref(), Some("Hi Ana"));
    // A template that does not render: blocked, the consent still kept, no content.
    facts.template = Some(template("Hi {{ nickname }}"));
    let decision = book(&settings).decide(&request, &facts, noon());
    let prepared = decision.prepared().expect("prepared");
    assert!(prepared.keep_consent && prepared.content.is_none());
    // Refused before consent: nothing prepared.
    facts.record_client = None;
    assert!(
        book(&settings)
            .decide(&request, &facts, noon())
            .prepared()
            .is_none()
    );
}

#[test]
fn a_review_request_carries_its_link_when_its_client_has_a_destination() {
    let settings = Settings::default();
    let request = request(json!({ "kind": "review_request" }));
    let mut facts = facts();
    set_consent(&mut facts, "express");
    facts.template = Some(template("Review us: {{ review_url }}"));
    facts.review_destination = true;
    let decision = book(&settings).decide(&request, &facts, noon());
    let body = decision
        .prepared()
        .and_then(|p| p.content.as_ref())
        .map(|c| c.body.clone())
        .unwrap_or_default();
    assert!(body.starts_with("Review us: http"), "{body}");
}

#[test]
fn portal_wording_is_checked_before_approval_is_asked() {
    let settings = Settings::default();
    let request = request(json!({ "kind": "portal_update" }));
    let mut facts = facts();
    facts.template = Some(template("Call +1 415 555 2671 about {{ name }}"));
    let decision = book(&settings).decide(&request, &facts, noon());
    assert_eq!(code(&decision), "portal_unsafe");
    facts.template = Some(template("Hi {{ name }}"));
    let decision = book(&settings).decide(&request, &facts, noon());
    assert_eq!(code(&decision), "approval_required");
}

#[test]
fn the_gate_keeps_released_order_and_obeys_the_pause_switch() {
    let settings = Settings::default();
    let book = book(&settings);
    let Decision::Dispatch(prepared) = book.decide(&request(json!({})), &facts(), noon()) else {
        panic!("an ordinary message dispatches");
    };
    let pause = ActivePause {
        id: Uuid::nil(),
        scope: Scope::Global,
        reason: "provider incident".into(),
        actor: "ana".into(),
        automatic: false,
        started_at: noon(),
        expires_at: None,
        incident: None,
    };
    let cases = [
        (true, Verdict::Clear, "wait_for_older"),
        (false, Verdict::Clear, "send"),
        (false, Verdict::Paused(pause), "held"),
        (false, Verdict::Blind { stale_for: None }, "blind"),
    ];
    for (older, verdict, expected) in cases {
        let decision = book.gate(prepared.clone(), older, verdict);
        assert_eq!(code(&decision), expected);
    }
}

#[test]
fn a_providers_answer_is_sent_retried_or_failed_with_its_reason() {
    use crate::providers::Dispatch;
    use crate::rules::answer::Answer;
    let settings = Settings::default();
    let book = book(&settings);
    let max = i32::try_from(settings.sender.max_attempts).expect("a small number");
    let transient = || Dispatch::Transient {
        reason: "twilio 503".into(),
        retry_after: None,
        maybe_sent: false,
    };
    let code = |answer: Answer| match answer {
        Answer::Sent { .. } => "sent".to_string(),
        Answer::Retry { .. } => "retry".to_string(),
        Answer::Fail {
            reason, opted_out, ..
        } => format!("{reason} {opted_out}"),
    };
    let sent = Dispatch::Sent {
        provider: "twilio",
        provider_message_id: "SM1".into(),
    };
    assert_eq!(code(book.answer(sent, 1)), "sent");
    assert_eq!(code(book.answer(transient(), max - 1)), "retry");
    assert_eq!(
        code(book.answer(transient(), max)),
        "retries_exhausted: twilio 503 false"
    );
    let rejected = Dispatch::Permanent {
        reason: "twilio 21211".into(),
        opted_out: false,
    };
    assert_eq!(
        code(book.answer(rejected, 1)),
        "provider_rejected: twilio 21211 false"
    );
    let unsubscribed = Dispatch::Permanent {
        reason: "twilio 21610".into(),
        opted_out: true,
    };
    assert_eq!(code(book.answer(unsubscribed, 1)), "opted_out true");
}
