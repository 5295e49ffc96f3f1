//! Provider webhooks through the real HTTP stack: what is accepted lands in the right queue byte
//! for byte with its headers before the 2xx; what is not provably from the provider lands nowhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use comms_tests::eventually;
use secrecy::SecretString;

use super::{Gateway, INBOUND_SECRET, Sig, form, header};

const STATUS: [(&str, &str); 6] = [
    ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
    ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
    ("MessageStatus", "delivered"),
    ("To", "+14155552671"),
    ("From", "+15005550006"),
    ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
];

#[tokio::test]
async fn a_signed_twilio_status_callback_is_published_raw_before_the_200() {
    let gw = Gateway::start(&[]).await;
    let response = gw
        .twilio("/webhooks/twilio/status", &STATUS, Sig::Valid)
        .await;
    assert_eq!(response.status(), 200);
    // The 200 came after the broker's confirm, so the payload is already in the queue.
    let queued = gw.status_queue().await;
    assert_eq!(queued.len(), 1);
    let (body, headers) = &queued[0];
    assert_eq!(body.as_slice(), form(&STATUS).as_bytes());
    assert_eq!(
        header(headers, "x-comms-provider").as_deref(),
        Some("twilio")
    );
    assert_eq!(header(headers, "x-comms-kind").as_deref(), Some("status"));
    assert_eq!(
        header(headers, "x-comms-content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let received = header(headers, "x-comms-received-at").expect("received-at header");
    assert!(chrono::DateTime::parse_from_rfc3339(&received).is_ok());
    assert_eq!(
        comms_gateway::RECEIVED_AT_HEADER,
        comms_status::handler::RECEIVED_AT_HEADER
    );
    assert_eq!(
        comms_gateway::PROVIDER_HEADER,
        comms_status::handler::PROVIDER_HEADER
    );
    gw.stop().await;
}

#[tokio::test]
async fn twilio_requests_without_a_valid_signature_are_refused_and_not_published() {
    let gw = Gateway::start(&[]).await;
    let path = "/webhooks/twilio/status";
    let missing = gw.twilio(path, &STATUS, Sig::Missing).await;
    assert_eq!(missing.status(), 400);
    let wrong = gw
        .twilio(path, &STATUS, Sig::Is("WRONG_SIGNATURE".into()))
        .await;
    assert_eq!(wrong.status(), 403);
    let body: serde_json::Value = wrong.json().await.expect("json");
    assert_eq!(body["reason"], "invalid_signature");
    // Signed for other parameters (a tampered body).
    let mut tampered = STATUS;
    tampered[2] = ("MessageStatus", "failed");
    let signed_for_original = super::twilio_signature(&format!("{}{path}", gw.url), &STATUS);
    let response = gw
        .twilio(path, &tampered, Sig::Is(signed_for_original))
        .await;
    assert_eq!(response.status(), 403);
    // Signed with another account's token.
    let other = comms_sandbox::signing::twilio_signature(
        "another-token",
        &format!("{}{path}", gw.url),
        &STATUS,
    );
    assert_eq!(gw.twilio(path, &STATUS, Sig::Is(other)).await.status(), 403);
    // Signed for another URL (the inbound endpoint's signature replayed on status).
    let replayed = super::twilio_signature(&format!("{}/webhooks/twilio/inbound", gw.url), &STATUS);
    assert_eq!(
        gw.twilio(path, &STATUS, Sig::Is(replayed)).await.status(),
        403
    );
    assert!(gw.status_queue().await.is_empty());
    gw.stop().await;
}

/// Failover's second Twilio account signs its callbacks with its own token: they are verified
/// with it (chosen by the form's `AccountSid`, or found by trying each configured token), and a
/// token no configured account has is still refused.
#[tokio::test]
async fn callbacks_of_the_second_twilio_account_are_verified_with_its_token() {
    const SECOND: &str = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let gw = Gateway::start(&[
        ("COMMS__PROVIDERS__TWILIO_SECONDARY__ACCOUNT_SID", SECOND),
        (
            "COMMS__PROVIDERS__TWILIO_SECONDARY__AUTH_TOKEN",
            "second-token",
        ),
    ])
    .await;
    let path = "/webhooks/twilio/status";
    let url = format!("{}{path}", gw.url);
    let mut second = STATUS;
    second[5] = ("AccountSid", SECOND);
    let signed = comms_sandbox::signing::twilio_signature("second-token", &url, &second);
    assert_eq!(
        gw.twilio(path, &second, Sig::Is(signed.clone()))
            .await
            .status(),
        200
    );
    // Naming the other account does not stop the right token from being found: the signature
    // decides, and it covers the AccountSid too.
    let mut misnamed = STATUS;
    misnamed[0] = ("MessageSid", "SM11111111111111111111111111111111");
    let by_second = comms_sandbox::signing::twilio_signature("second-token", &url, &misnamed);
    assert_eq!(
        gw.twilio(path, &misnamed, Sig::Is(by_second))
            .await
            .status(),
        200
    );
    // The primary account's callbacks still verify with the primary token.
    assert_eq!(gw.twilio(path, &STATUS, Sig::Valid).await.status(), 200);
    // A token neither account has: refused, nothing published for it.
    let stranger = comms_sandbox::signing::twilio_signature("another-token", &url, &second);
    assert_eq!(
        gw.twilio(path, &second, Sig::Is(stranger)).await.status(),
        403
    );
    // Tampering with a second-account callback breaks its signature like any other.
    let mut tampered = second;
    tampered[2] = ("MessageStatus", "failed");
    assert_eq!(
        gw.twilio(path, &tampered, Sig::Is(signed)).await.status(),
        403
    );
    assert_eq!(gw.status_queue().await.len(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn the_query_string_is_part_of_the_signed_url() {
    let gw = Gateway::start(&[]).await;
    let path = "/webhooks/twilio/status?account=main&rc=3";
    assert_eq!(gw.twilio(path, &STATUS, Sig::Valid).await.status(), 200);
    let without_query =
        super::twilio_signature(&format!("{}/webhooks/twilio/status", gw.url), &STATUS);
    assert_eq!(
        gw.twilio(path, &STATUS, Sig::Is(without_query))
            .await
            .status(),
        403
    );
    assert_eq!(gw.status_queue().await.len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_twilio_inbound_message_goes_to_the_replies_queue_with_empty_twiml() {
    let gw = Gateway::start(&[]).await;
    let inbound = [
        ("MessageSid", "SMfeedfeedfeedfeedfeedfeedfeedfeed"),
        ("From", "+14155552671"),
        ("To", "+15005550006"),
        ("Body", "STOP"),
        ("NumMedia", "0"),
    ];
    let response = gw
        .twilio("/webhooks/twilio/inbound", &inbound, Sig::Valid)
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("text")
            .starts_with("text/xml")
    );
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("<Response></Response>")
    );
    let replies = gw.replies_queue().await;
    assert_eq!(replies.len(), 1);
    assert_eq!(
        header(&replies[0].1, "x-comms-kind").as_deref(),
        Some("inbound")
    );
    assert!(gw.status_queue().await.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn sendgrid_events_need_a_fresh_valid_signature_over_the_raw_body() {
    let gw = Gateway::start(&[]).await;
    // CRLFs included: the signature covers the bytes as sent.
    let body = b"[{\"event\":\"delivered\",\"sg_event_id\":\"ev-1\",\"sg_message_id\":\"abc.filter\"},\r\n{\"event\":\"open\",\"sg_event_id\":\"ev-2\"}]\r\n";
    assert_eq!(gw.sendgrid_signed(body).await.status(), 200);
    let queued = gw.status_queue().await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0.as_slice(), body.as_slice());
    assert_eq!(
        header(&queued[0].1, "x-comms-provider").as_deref(),
        Some("sendgrid")
    );

    let now = chrono::Utc::now().timestamp().to_string();
    let signature = gw.signer.sign(&now, body);
    // Missing headers.
    assert_eq!(
        gw.sendgrid(body, None, Some(&signature)).await.status(),
        400
    );
    assert_eq!(gw.sendgrid(body, Some(&now), None).await.status(), 400);
    // The body changed after signing (the trailing CRLF dropped).
    let trimmed = &body[..body.len() - 2];
    assert_eq!(
        gw.sendgrid(trimmed, Some(&now), Some(&signature))
            .await
            .status(),
        403
    );
    // Signed by another key.
    let stranger = comms_sandbox::SendGridSigner::generate().expect("key");
    let foreign = stranger.sign(&now, body);
    assert_eq!(
        gw.sendgrid(body, Some(&now), Some(&foreign)).await.status(),
        403
    );
    // Validly signed, but an hour old (the default tolerance is five minutes) or from the future.
    for skew in [-3600_i64, 3600] {
        let at = (chrono::Utc::now().timestamp() + skew).to_string();
        let stale = gw.signer.sign(&at, body);
        let response = gw.sendgrid(body, Some(&at), Some(&stale)).await;
        assert_eq!(response.status(), 403);
        let reason: serde_json::Value = response.json().await.expect("json");
        assert_eq!(reason["reason"], "stale_timestamp");
    }
    assert!(gw.status_queue().await.is_empty());
    gw.stop().await;
}

const S1_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
const S1_SIGNATURE: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
const S1_PAYLOAD: &str = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";

#[tokio::test]
async fn sendgrids_published_vector_verifies_over_http_and_is_stale_by_default() {
    // With SendGrid's published key, the official vector goes through the whole HTTP stack.
    let tolerant = Gateway::start_with(
        &[("COMMS__GATEWAY__SIGNATURE_TOLERANCE", "100years")],
        |s| {
            s.providers.sendgrid.webhook_public_key = Some(S1_KEY.into());
        },
    )
    .await;
    let response = tolerant
        .sendgrid(
            S1_PAYLOAD.as_bytes(),
            Some("1600112502"),
            Some(S1_SIGNATURE),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(tolerant.status_queue().await[0].0, S1_PAYLOAD.as_bytes());
    tolerant.stop().await;

    let strict = Gateway::start_with(&[], |s| {
        s.providers.sendgrid.webhook_public_key = Some(S1_KEY.into());
    })
    .await;
    let response = strict
        .sendgrid(
            S1_PAYLOAD.as_bytes(),
            Some("1600112502"),
            Some(S1_SIGNATURE),
        )
        .await;
    assert_eq!(response.status(), 403);
    strict.stop().await;
}

#[tokio::test]
async fn without_a_sendgrid_key_events_are_refused_with_503() {
    let gw = Gateway::start_with(&[], |s| s.providers.sendgrid.webhook_public_key = None).await;
    let response = gw.sendgrid(b"[]", None, None).await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["reason"], "sendgrid_key_missing");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("WEBHOOK_PUBLIC_KEY"))
    );
    assert!(gw.status_queue().await.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn inbound_parse_is_protected_by_the_secret_path() {
    let gw = Gateway::start(&[]).await;
    let body =
        "--XyZ\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nRe: hello\r\n--XyZ--\r\n";
    let post = |secret: &str| {
        gw.http
            .post(format!("{}/webhooks/sendgrid/inbound/{secret}", gw.url))
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body(body)
            .send()
    };
    assert_eq!(post("not-the-secret").await.expect("answer").status(), 404);
    assert_eq!(post("").await.expect("answer").status(), 404);
    assert!(gw.replies_queue().await.is_empty());
    assert_eq!(post(INBOUND_SECRET).await.expect("answer").status(), 200);
    let replies = gw.replies_queue().await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, body.as_bytes());
    assert_eq!(
        header(&replies[0].1, "x-comms-content-type").as_deref(),
        Some("multipart/form-data; boundary=XyZ")
    );
    gw.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let gw = Gateway::start(&[("COMMS__GATEWAY__MAX_BODY_BYTES", "1024")]).await;
    let long = "x".repeat(2000);
    let params = [
        ("MessageSid", "SM1"),
        ("MessageStatus", "sent"),
        ("Pad", long.as_str()),
    ];
    assert_eq!(
        gw.twilio("/webhooks/twilio/status", &params, Sig::Valid)
            .await
            .status(),
        413
    );
    let events = format!("[{{\"event\":\"open\",\"pad\":\"{long}\"}}]");
    assert_eq!(gw.sendgrid_signed(events.as_bytes()).await.status(), 413);
    assert!(gw.status_queue().await.is_empty());
    gw.stop().await;
}

/// A broker URL whose port nobody listens on.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

#[tokio::test]
async fn with_the_broker_down_webhooks_get_503_so_the_provider_retries() {
    let closed = closed_port_url().await;
    let gw = Gateway::start_with(&[], |s| s.amqp.url = SecretString::from(closed)).await;
    let response = gw
        .twilio("/webhooks/twilio/status", &STATUS, Sig::Valid)
        .await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["reason"], "broker_unavailable");
    assert_eq!(gw.sendgrid_signed(b"[]").await.status(), 503);
    // Nothing reached the (real) broker's queues of this namespace.
    assert!(gw.status_queue().await.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn the_gateway_reconnects_after_losing_the_broker() {
    let (gw, proxy) = Gateway::behind_proxy().await;
    let path = "/webhooks/twilio/status";
    let accepted = AtomicUsize::new(0);
    let post = || async {
        let status = gw.twilio(path, &STATUS, Sig::Valid).await.status();
        if status == 200 {
            accepted.fetch_add(1, Ordering::SeqCst);
        }
        status
    };
    assert_eq!(post().await, 200);

    proxy.cut();
    let refused = eventually(Duration::from_secs(30), || async { post().await == 503 }).await;
    assert!(
        refused,
        "with the broker unreachable the gateway answers 503"
    );

    proxy.restore();
    let back = eventually(Duration::from_secs(30), || async { post().await == 200 }).await;
    assert!(
        back,
        "the next request after the broker returns reconnects and is accepted"
    );
    // Nothing accepted was lost: every 200 is in the queue.
    let queued = gw.status_queue().await.len();
    assert!(
        queued >= accepted.load(Ordering::SeqCst) && queued >= 2,
        "{queued} queued"
    );
    gw.stop().await;
}

#[tokio::test]
async fn health_and_metrics_are_served_by_the_gateway() {
    let gw = Gateway::start(&[]).await;
    let get = |path: &str| gw.http.get(format!("{}{path}", gw.url)).send();
    assert_eq!(get("/healthz").await.expect("answer").status(), 200);
    // Ready once the broker link is up (the gateway connects at start).
    let ready = eventually(Duration::from_secs(30), || async {
        get("/readyz").await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "the gateway becomes ready");
    let _ = gw
        .twilio("/webhooks/twilio/status", &STATUS, Sig::Missing)
        .await;
    let metrics = get("/metrics")
        .await
        .expect("answer")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("comms_gateway_webhooks_total"),
        "{metrics}"
    );
    gw.stop().await;
}
