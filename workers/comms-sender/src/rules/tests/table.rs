//! Every reason code [`crate::rules::Book::decide`] gives, one row each: a request, the facts
//! that differ from a message that passes, and the code expected.

use serde_json::{Value, json};

use super::*;
use crate::rules::facts::DigestClearance;

const INCIDENT: &str = "123e4567-e89b-12d3-a456-426614174009";

type Row = (&'static str, Value, fn(&mut Facts), &'static str);

fn outreach() -> Value {
    json!({ "kind": "outreach" })
}

#[test]
fn every_reason_code_from_facts_alone() {
    let settings = Settings::default();
    let book = book(&settings);
    let table: Vec<Row> = vec![
        ("an ordinary message passes", json!({}), |_| {}, "dispatch"),
        (
            "a new message passes",
            json!({}),
            |f| f.message = None,
            "dispatch",
        ),
        (
            "already sent",
            json!({}),
            |f| f.message = Some(message("sent")),
            "settled",
        ),
        (
            "blocked",
            json!({}),
            |f| f.message = Some(message("blocked")),
            "settled",
        ),
        (
            "sending just now",
            json!({}),
            |f| f.message = Some(message("sending")),
            "in_flight",
        ),
        (
            "sending for an hour",
            json!({}),
            |f| {
                f.message = Some(message("sending"));
                f.unchanged_for = std::time::Duration::from_secs(3600);
            },
            "dispatch_outcome_unknown",
        ),
        (
            "no record",
            json!({}),
            |f| f.record_client = None,
            "record_not_found",
        ),
        (
            "a record of no client",
            json!({}),
            |f| f.record_client = Some(None),
            "dispatch",
        ),
        (
            "opted out",
            json!({}),
            |f| set_consent(f, "opted_out"),
            "opted_out",
        ),
        (
            "suppressed",
            json!({}),
            |f| set_consent(f, "suppressed"),
            "suppressed",
        ),
        (
            "no contact channel: unknown consent",
            json!({}),
            |f| f.contact = None,
            "dispatch",
        ),
        (
            "outreach without consent",
            outreach(),
            |_| {},
            "consent_missing",
        ),
        (
            "outreach with implied consent",
            outreach(),
            |f| set_consent(f, "implied"),
            "consent_missing",
        ),
        (
            "outreach with express consent",
            outreach(),
            |f| set_consent(f, "express"),
            "dispatch",
        ),
        (
            "review request, no destination",
            json!({ "kind": "review_request" }),
            |f| {
                set_consent(f, "express");
                f.template = Some(template("Review us: {{ review_url }}"));
            },
            "review_destination_missing",
        ),
        (
            "template missing",
            json!({}),
            |f| f.template = None,
            "template_not_found",
        ),
        (
            "template not approved",
            json!({}),
            |f| {
                f.template = Some(TemplateRow {
                    state: "draft".into(),
                    ..template("Hi")
                });
            },
            "template_not_approved",
        ),
        (
            "template for email",
            json!({}),
            |f| {
                f.template = Some(TemplateRow {
                    channel: "email".into(),
                    ..template("Hi")
                });
            },
            "template_channel_mismatch",
        ),
        (
            "a variable missing",
            json!({}),
            |f| f.template = Some(template("Hi {{ nickname }}")),
            "template_render_failed",
        ),
        (
            "portal wording too long",
            json!({ "kind": "portal_update" }),
            |f| {
                f.template = Some(template(&"word ".repeat(200)));
            },
            "portal_unsafe",
        ),
        (
            "an AI draft",
            json!({ "ai_draft": true }),
            |_| {},
            "ai_draft_needs_review",
        ),
        (
            "an AI draft reviewed",
            json!({ "ai_draft": true }),
            |f| {
                f.approvals = vec![(hash_of_hi_ana(), "reviewed_safe".into())];
            },
            "dispatch",
        ),
        (
            "an AI draft reviewed in other words",
            json!({ "ai_draft": true }),
            |f| {
                f.approvals = vec![("other".into(), "reviewed_safe".into())];
            },
            "ai_draft_needs_review",
        ),
        (
            "needs approval",
            json!({ "contains_roi": true }),
            |_| {},
            "approval_required",
        ),
        (
            "approved",
            json!({ "contains_roi": true }),
            |f| {
                f.approvals = vec![(hash_of_hi_ana(), "approved".into())];
            },
            "dispatch",
        ),
        (
            "approval rejected",
            json!({ "contains_roi": true }),
            |f| {
                f.approvals = vec![(hash_of_hi_ana(), "rejected".into())];
            },
            "approval_rejected",
        ),
        (
            "approval expired",
            json!({ "contains_roi": true }),
            |f| {
                f.approvals = vec![(hash_of_hi_ana(), "expired".into())];
            },
            "approval_expired",
        ),
        (
            "an AI review is no approval",
            json!({ "contains_roi": true }),
            |f| {
                f.approvals = vec![(hash_of_hi_ana(), "reviewed_safe".into())];
            },
            "approval_required",
        ),
        (
            "incident notice cleared",
            notice(),
            |f| f.notice = Some("approved"),
            "dispatch",
        ),
        (
            "incident notice rejected",
            notice(),
            |f| f.notice = Some("rejected"),
            "approval_rejected",
        ),
        (
            "incident notice waiting",
            notice(),
            |_| {},
            "approval_required",
        ),
        (
            "digest send cleared",
            digest(),
            |f| f.digest = Some(cleared("Hi Ana")),
            "dispatch",
        ),
        (
            "digest approved in other words",
            digest(),
            |f| f.digest = Some(cleared("Hello Ana")),
            "approval_required",
        ),
        (
            "deferred to later",
            json!({}),
            |f| {
                if let Some(m) = f.message.as_mut() {
                    m.send_after = Some("2026-11-30T13:00:00Z".parse().expect("time"));
                }
            },
            "send_after",
        ),
        (
            "a new message for later",
            json!({ "send_after": "2026-11-30T13:00:00Z" }),
            |f| f.message = None,
            "send_after",
        ),
        (
            "outreach at night",
            outreach(),
            |f| {
                set_consent(f, "express");
                if let Some(c) = f.contact.as_mut() {
                    c.time_zone = Some("Asia/Tokyo".into());
                }
            },
            "quiet_hours",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, changes, adjust, expected) in table {
        let request = request(changes);
        let mut facts = facts();
        adjust(&mut facts);
        let got = code(&book.decide(&request, &facts, noon()));
        if got != expected {
            wrong.push(format!("{name}: expected {expected}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

fn notice() -> Value {
    let contact = "123e4567-e89b-12d3-a456-426614174000";
    json!({
        "idempotency_key": format!("incident:{INCIDENT}:1:{contact}:sms"),
        "kind": "incident_notice",
        "record": { "type": "incident", "id": INCIDENT },
    })
}

fn digest() -> Value {
    json!({
        "idempotency_key": "digest:123e4567-e89b-12d3-a456-426614174002:123e4567-e89b-12d3-a456-426614174000:sms",
        "kind": "report_digest",
    })
}

fn cleared(body: &str) -> DigestClearance {
    DigestClearance {
        subject: None,
        body: body.into(),
        cleared: true,
    }
}
