//! A Twilio webhook's body is read by its content type in one place (`comms_domain::webhook_body`)
//! and the signature must cover exactly what the workers will read: a form is signed as URL +
//! sorted fields; JSON over a URL carrying `bodySHA256`, which must match the body; anything else
//! is refused. SendGrid's endpoints take only their own content type.

use sha2::{Digest, Sha256};

use super::{Gateway, INBOUND_SECRET, Sig, form, twilio_signature};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// A legitimately signed status callback, captured by an attacker, sorted by name.
const CAPTURED: [(&str, &str); 3] = [
    ("MessageSid", "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01"),
    ("MessageStatus", "delivered"),
    ("To", "+14155552671"),
];

fn hex_sha256(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The answer's status and `reason` code (empty when the body is not a JSON error).
async fn reason(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let reason = body["reason"].as_str().unwrap_or_default().to_string();
    (status, reason)
}

#[tokio::test]
async fn a_forged_json_callback_built_from_a_captured_signature_is_refused_and_not_published() {
    let gw = Gateway::start(&[]).await;
    for endpoint in ["/webhooks/twilio/status", "/webhooks/twilio/inbound"] {
        // Twilio signed a form callback to a URL with a query string.
        let path = format!("{endpoint}?account=main");
        let signature = twilio_signature(&format!("{}{path}", gw.url), &CAPTURED);
        // Its signed parameters moved into the query: the URL alone is the same signed string.
        let moved: String = CAPTURED.iter().map(|(k, v)| format!("{k}{v}")).collect();
        let forged_path = format!("{path}{moved}");
        let forged = br#"{"MessageSid":"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01","MessageStatus":"undelivered","ErrorCode":"21610","From":"+14155552671","To":"+15005550006","Body":"STOP"}"#;
        let headers = [("X-Twilio-Signature", signature.as_str())];
        let as_json = gw
            .post_raw(&forged_path, Some(JSON), forged, &headers)
            .await;
        assert_eq!(reason(as_json).await, (403, "body_not_signed".into()));
        // The same forged content as a form: its fields are signed over too, so it fails.
        let forged_form = form(&[
            ("MessageSid", "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "21610"),
            ("Body", "STOP"),
        ]);
        let as_form = gw
            .post_raw(&forged_path, Some(FORM), forged_form.as_bytes(), &headers)
            .await;
        assert_eq!(reason(as_form).await, (403, "invalid_signature".into()));
    }
    assert!(gw.status_queue().await.is_empty());
    assert!(gw.replies_queue().await.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn a_json_callback_is_accepted_only_with_a_matching_body_sha256() {
    let gw = Gateway::start(&[]).await;
    let body =
        br#"{"MessageSid":"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa02","MessageStatus":"delivered"}"#;
    let path = format!("/webhooks/twilio/status?bodySHA256={}", hex_sha256(body));
    let no_params: [(&str, &str); 0] = [];
    let signature = twilio_signature(&format!("{}{path}", gw.url), &no_params);
    let headers = [("X-Twilio-Signature", signature.as_str())];

    // Signed URL, but another body: the hash does not match.
    let other = br#"{"MessageSid":"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa02","MessageStatus":"failed"}"#;
    let tampered = gw.post_raw(&path, Some(JSON), other, &headers).await;
    assert_eq!(reason(tampered).await, (403, "body_hash_mismatch".into()));
    // The signed body sent as a form: read as a form, its fields are not what was signed.
    let as_form = gw.post_raw(&path, Some(FORM), body, &headers).await;
    assert_eq!(as_form.status(), 403);
    assert!(gw.status_queue().await.is_empty());

    // The real thing, published with its content type, so the worker reads it as JSON.
    let content_type = "application/json; charset=utf-8";
    let accepted = gw.post_raw(&path, Some(content_type), body, &headers).await;
    assert_eq!(accepted.status(), 200);
    let queued = gw.status_queue().await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0, body.as_slice());
    assert_eq!(
        super::header(&queued[0].1, "x-comms-content-type").as_deref(),
        Some(content_type)
    );
    gw.stop().await;
}

#[tokio::test]
async fn any_other_content_type_is_refused_with_415_before_anything_is_published() {
    let gw = Gateway::start(&[]).await;
    let path = "/webhooks/twilio/status";
    let params = [
        ("MessageSid", "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa03"),
        ("MessageStatus", "delivered"),
    ];
    // A valid form signature: only the content type is wrong.
    let signature = twilio_signature(&format!("{}{path}", gw.url), &params);
    let headers = [("X-Twilio-Signature", signature.as_str())];
    let body = form(&params);
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/xml"),
        Some("multipart/form-data; boundary=x"),
        Some("application/x-www-form-urlencoded; charset=iso-8859-1"),
    ] {
        let response = gw
            .post_raw(path, content_type, body.as_bytes(), &headers)
            .await;
        assert_eq!(
            reason(response).await,
            (415, "unsupported_content_type".into()),
            "{content_type:?}"
        );
    }
    // The form itself, signed as Twilio signs forms, still goes through.
    assert_eq!(gw.twilio(path, &params, Sig::Valid).await.status(), 200);
    assert_eq!(gw.status_queue().await.len(), 1);

    // SendGrid: events are a signed JSON batch; Inbound Parse is multipart.
    let events = b"[{\"event\":\"delivered\",\"sg_event_id\":\"ev-ct\"}]";
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signed = gw.signer.sign(&timestamp, events);
    let sendgrid_headers = [
        ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp.as_str()),
        ("X-Twilio-Email-Event-Webhook-Signature", signed.as_str()),
    ];
    let events_path = "/webhooks/sendgrid/events";
    let as_text = gw
        .post_raw(events_path, Some("text/plain"), events, &sendgrid_headers)
        .await;
    assert_eq!(
        reason(as_text).await,
        (415, "unsupported_content_type".into())
    );
    let inbound_path = format!("/webhooks/sendgrid/inbound/{INBOUND_SECRET}");
    let as_json = gw
        .post_raw(&inbound_path, Some(JSON), b"{\"from\":\"x\"}", &[])
        .await;
    assert_eq!(
        reason(as_json).await,
        (415, "unsupported_content_type".into())
    );
    assert!(gw.status_queue().await.is_empty());
    assert!(gw.replies_queue().await.is_empty());
    gw.stop().await;
}
