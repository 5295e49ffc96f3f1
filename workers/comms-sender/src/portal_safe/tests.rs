//! Each class of leak is caught, named once and located; clean wording passes.

use comms_domain::contract::Kind;

use super::{Problem, Wording, check};

fn problems(kind: Kind, contains_roi: bool, body: &str) -> Vec<Problem> {
    check(
        &Wording {
            kind,
            contains_roi,
            subject: Some("Update"),
            body,
        },
        600,
    )
}

fn codes(kind: Kind, body: &str) -> Vec<&'static str> {
    problems(kind, false, body).iter().map(|p| p.code).collect()
}

#[test]
fn clean_wording_passes() {
    for body in [
        "Your March report is ready in the portal. We reviewed 42 listings and updated 3.",
        "We moved your kickoff call to Tuesday 10:00. Reply here if that does not suit you.",
        "Reminder: the review of your new homepage is due on 2026-11-27 at 14:00.",
        "We'll call you on the number ending 2671, or email d***@acme.com, account ending 1234.",
        "Your invoice 1,250,000 was paid. Please select a date from the calendar.",
    ] {
        assert!(
            codes(Kind::PortalUpdate, body).is_empty(),
            "{body}: {:?}",
            problems(Kind::PortalUpdate, false, body)
        );
    }
}

#[test]
fn too_long_wording_is_refused_with_its_length() {
    let body = "a".repeat(650);
    let found = problems(Kind::PortalUpdate, false, &body);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, "too_long");
    assert!(
        found[0].detail.contains("657 characters"),
        "{}",
        found[0].detail
    );
}

#[test]
fn raw_payloads_are_caught() {
    for body in [
        r#"Status: {"status": "failed", "code": 30007}"#,
        r#"Results [{"id": 1}]"#,
        r#"The provider said "ErrorCode": 21610 today"#,
        "<?xml version=\"1.0\"?><Response></Response>",
    ] {
        assert_eq!(codes(Kind::PortalUpdate, body), ["raw_payload"], "{body}");
    }
}

#[test]
fn stack_traces_are_caught() {
    for body in [
        "Failed:\n    at com.acme.Sender.send(Sender.java:42)",
        "Traceback (most recent call last):\n  File \"x.py\", line 3",
        "thread 'main' panicked at src/main.rs:10:5",
        "TypeError: cannot read property of undefined",
    ] {
        assert!(
            codes(Kind::PortalUpdate, body).contains(&"stack_trace"),
            "{body}: {:?}",
            codes(Kind::PortalUpdate, body)
        );
    }
}

#[test]
fn provider_ids_are_caught() {
    for body in [
        "Sent as SM0123456789abcdef0123456789abcdef.",
        "Account AC0123456789abcdef0123456789abcdef sent it.",
        "SendGrid id 14c5d75ce93.filter0001.16648.5515E0B88.0",
        "see sg_message_id in the log",
        "key SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    ] {
        assert_eq!(codes(Kind::PortalUpdate, body), ["provider_id"], "{body}");
    }
}

#[test]
fn sql_is_caught() {
    for body in [
        "We ran SELECT id, body FROM messages to check.",
        "select * from comms.messages",
        "delete from comms.tasks",
        "ERROR: duplicate key value violates unique constraint",
    ] {
        assert!(
            codes(Kind::PortalUpdate, body).contains(&"sql"),
            "{body}: {:?}",
            codes(Kind::PortalUpdate, body)
        );
    }
}

#[test]
fn private_details_are_caught_and_named_without_repeating_them() {
    let cases = [
        ("Call Dana on +1 415 555 2671 today.", "phone_number"),
        ("Call (415) 555-2671 today.", "phone_number"),
        ("Write to dana.smith@acme.com for details.", "email_address"),
        ("Paid with 4111 1111 1111 1111 yesterday.", "card_number"),
        (
            "Refund to account number 12345678 is done.",
            "account_number",
        ),
        (
            "IBAN GB29 NWBK 6016 1331 9268 19 on file.",
            "account_number",
        ),
        ("SSN 123-45-6789 verified.", "national_id"),
    ];
    for (body, code) in cases {
        let found = problems(Kind::PortalUpdate, false, body);
        assert_eq!(
            found.iter().map(|p| p.code).collect::<Vec<_>>(),
            [code],
            "{body}"
        );
        for secret in ["2671", "dana.smith", "1111", "12345678", "6016", "6789"] {
            assert!(
                !found[0].detail.contains(secret),
                "{} repeats the detail",
                found[0].detail
            );
        }
        assert!(found[0].detail.contains("character"), "{}", found[0].detail);
    }
}

#[test]
fn several_leaks_of_one_class_are_one_problem() {
    let found = problems(Kind::PortalUpdate, false, "a@b.com, c@d.com and e@f.com");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].detail.starts_with("several email address"),
        "{}",
        found[0].detail
    );
}

#[test]
fn roi_claims_need_a_source_and_a_caveat() {
    let bare = codes(
        Kind::PortalUpdate,
        "Your campaign returned 240% ROI this quarter.",
    );
    assert_eq!(bare, ["source_missing", "caveat_missing"]);
    let sourced =
        "Your campaign returned an estimated 240% ROI this quarter.\nSource: Google Ads, Q3 export";
    assert!(codes(Kind::PortalUpdate, sourced).is_empty());
    // The flag alone makes it a claim, even if the words do not.
    let flagged = problems(Kind::PortalUpdate, true, "Your results are in.");
    assert_eq!(
        flagged.iter().map(|p| p.code).collect::<Vec<_>>(),
        ["source_missing", "caveat_missing"]
    );
}

#[test]
fn incident_notices_and_digests_need_their_caveats() {
    assert_eq!(
        codes(Kind::IncidentNotice, "Email is down."),
        ["caveat_missing"]
    );
    assert!(
        codes(
            Kind::IncidentNotice,
            "Email is down. We are still investigating."
        )
        .is_empty()
    );
    assert_eq!(
        codes(Kind::ReportDigest, "You had 42 new leads."),
        ["caveat_missing"]
    );
    assert!(codes(Kind::ReportDigest, "As of Monday you had 42 new leads.").is_empty());
}

#[test]
fn every_class_in_one_text_is_listed() {
    let body = r#"{"to": "+14155552671"} SM0123456789abcdef0123456789abcdef dana@acme.com 240% up"#;
    let found = codes(Kind::IncidentNotice, body);
    for code in [
        "provider_id",
        "raw_payload",
        "email_address",
        "phone_number",
        "source_missing",
        "caveat_missing",
    ] {
        assert!(found.contains(&code), "{code} missing from {found:?}");
    }
}
