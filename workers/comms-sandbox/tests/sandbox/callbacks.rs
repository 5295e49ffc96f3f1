//! Callback tests: a fake gateway receives the sandbox's Twilio status callbacks and SendGrid
//! events, and every one must carry a signature that verifies.

use std::time::Duration;

use comms_sandbox::{RunningSandbox, SandboxConfig};
use serde_json::{Value, json};

use comms_sandbox::signing::{
    SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER, TWILIO_SIGNATURE_HEADER,
    sendgrid_verifying_key, verify_sendgrid_signature, verify_twilio_signature,
};

use super::{add_fault, messages};
use crate::support::{ACCOUNT, Gateway, Hit, TOKEN, TestResult, mail, send_email, send_sms};

async fn with_gateway()
-> Result<(RunningSandbox, Gateway, String), Box<dyn std::error::Error + Send + Sync>> {
    let gateway = Gateway::start().await?;
    let config = SandboxConfig::generated()?.with_gateway(gateway.base_url.clone());
    let public_key = config.sendgrid_signer.public_key_base64().to_owned();
    Ok((RunningSandbox::start(config).await?, gateway, public_key))
}

fn assert_twilio_signed(hit: &Hit, url: &str) {
    let signature = hit.header(TWILIO_SIGNATURE_HEADER).unwrap_or_default();
    assert!(
        verify_twilio_signature(TOKEN, url, &hit.form, signature),
        "bad signature on {hit:?}"
    );
    assert!(!verify_twilio_signature(
        "other-token",
        url,
        &hit.form,
        signature
    ));
}

fn statuses(hits: &[Hit]) -> Vec<&str> {
    hits.iter()
        .filter_map(|h| h.param("MessageStatus"))
        .collect()
}

#[tokio::test]
async fn twilio_callbacks_are_signed_sent_then_delivered() -> TestResult {
    let (sandbox, gateway, _) = with_gateway().await?;
    let (http, base) = (reqwest::Client::new(), sandbox.base_url());
    let resource: Value = send_sms(&http, &base, "+15005550001", &[])
        .await?
        .json()
        .await?;
    let hits = gateway.wait_for("/webhooks/twilio/status", 2).await;
    assert_eq!(statuses(&hits), ["sent", "delivered"]);
    let url = format!("{}/webhooks/twilio/status", gateway.base_url);
    for hit in &hits {
        assert_twilio_signed(hit, &url);
        assert_eq!(hit.param("MessageSid"), resource["sid"].as_str());
        assert_eq!(hit.param("SmsSid"), resource["sid"].as_str());
        assert_eq!(hit.param("AccountSid"), Some(ACCOUNT));
        assert_eq!(
            (hit.param("To"), hit.param("From")),
            (Some("+15005550001"), Some("+15005550006"))
        );
        assert_eq!(hit.param("ApiVersion"), Some("2010-04-01"));
        assert_eq!(hit.param("ErrorCode"), None);
    }
    Ok(())
}

#[tokio::test]
async fn status_callback_url_and_undelivered_fault_are_honoured() -> TestResult {
    let (sandbox, gateway, _) = with_gateway().await?;
    let (http, base) = (reqwest::Client::new(), sandbox.base_url());
    let fault = json!({ "recipient": "+15005550002", "callback_status": "undelivered", "error_code": 30006 });
    add_fault(&http, &base, fault).await?;
    let callback = format!("{}/custom/sms-status", gateway.base_url);
    let sent = send_sms(
        &http,
        &base,
        "+15005550002",
        &[("StatusCallback", &callback)],
    )
    .await?;
    assert_eq!(
        sent.status(),
        201,
        "a callback-only fault must not fail the send"
    );
    let hits = gateway.wait_for("/custom/sms-status", 2).await;
    assert_eq!(statuses(&hits), ["sent", "undelivered"]);
    assert_eq!(hits[1].param("ErrorCode"), Some("30006"));
    hits.iter()
        .for_each(|hit| assert_twilio_signed(hit, &callback));
    assert!(gateway.hits("/webhooks/twilio/status").is_empty());
    assert_eq!(messages(&http, &base).await?.len(), 1);
    Ok(())
}

fn events(
    hit: &Hit,
    public_key: &str,
) -> Result<Vec<Value>, Box<dyn std::error::Error + Send + Sync>> {
    let key = sendgrid_verifying_key(public_key)?;
    let timestamp = hit
        .header(SENDGRID_TIMESTAMP_HEADER)
        .ok_or("no timestamp header")?;
    let signature = hit
        .header(SENDGRID_SIGNATURE_HEADER)
        .ok_or("no signature header")?;
    assert!(
        verify_sendgrid_signature(&key, timestamp, &hit.body, signature),
        "bad ECDSA signature"
    );
    let mut tampered = hit.body.to_vec();
    tampered.push(b' ');
    assert!(!verify_sendgrid_signature(
        &key, timestamp, &tampered, signature
    ));
    Ok(serde_json::from_slice(&hit.body)?)
}

#[tokio::test]
async fn sendgrid_events_are_signed_processed_then_delivered() -> TestResult {
    let (sandbox, gateway, public_key) = with_gateway().await?;
    let (http, base) = (reqwest::Client::new(), sandbox.base_url());
    let response = send_email(&http, &base, &mail("ada@example.com")).await?;
    let message_id = response.headers()["x-message-id"].to_str()?.to_owned();
    let hits = gateway.wait_for("/webhooks/sendgrid/events", 2).await;
    let mut kinds = Vec::new();
    for hit in &hits {
        let batch = events(hit, &public_key)?;
        assert_eq!(batch.len(), 1);
        let event = &batch[0];
        kinds.push(event["event"].as_str().unwrap_or_default().to_owned());
        assert_eq!(event["email"], "ada@example.com");
        assert_eq!(
            event["comms_id"], "m-42",
            "custom_args must be echoed at top level"
        );
        assert!(event["timestamp"].is_i64());
        assert!(event["sg_event_id"].is_string() && event["smtp-id"].is_string());
        let sg_message_id = event["sg_message_id"].as_str().unwrap_or_default();
        assert!(
            sg_message_id.starts_with(&format!("{message_id}.filter")),
            "{sg_message_id}"
        );
    }
    assert_eq!(kinds, ["processed", "delivered"]);
    Ok(())
}

#[tokio::test]
async fn bounce_fault_and_gateway_retries() -> TestResult {
    let (sandbox, gateway, public_key) = with_gateway().await?;
    let (http, base) = (reqwest::Client::new(), sandbox.base_url());
    let fault = json!({ "channel": "email", "recipient": "gone@example.com", "callback_status": "bounce", "times": 1 });
    add_fault(&http, &base, fault).await?;
    // The gateway refuses the first delivery; the sandbox must retry it.
    gateway.refuse_next(1);
    assert_eq!(
        send_email(&http, &base, &mail("gone@example.com"))
            .await?
            .status(),
        202
    );
    let hits = gateway.wait_for("/webhooks/sendgrid/events", 2).await;
    let first = events(&hits[0], &public_key)?;
    let second = events(&hits[1], &public_key)?;
    assert_eq!(first[0]["event"], "processed");
    assert_eq!(
        (second[0]["event"].clone(), second[0]["type"].clone()),
        (json!("bounce"), json!("bounce"))
    );
    assert!(second[0]["reason"].is_string());

    // times=1: the next message to the same address is delivered normally.
    send_email(&http, &base, &mail("gone@example.com")).await?;
    let hits = gateway.wait_for("/webhooks/sendgrid/events", 4).await;
    let last = events(&hits[3], &public_key)?;
    assert_eq!(last[0]["event"], "delivered");
    Ok(())
}

#[tokio::test]
async fn callback_delay_is_applied_and_shutdown_is_prompt() -> TestResult {
    let gateway = Gateway::start().await?;
    let mut config = SandboxConfig::generated()?.with_gateway(gateway.base_url.clone());
    config.callback_delay = Duration::from_millis(200);
    let sandbox = RunningSandbox::start(config).await?;
    let http = reqwest::Client::new();
    let started = tokio::time::Instant::now();
    let sent = send_sms(&http, &sandbox.base_url(), "+15005550001", &[]).await?;
    assert_eq!(sent.status(), 201);
    // Had the response waited for its callbacks, the gateway would already have them.
    assert!(
        gateway.hits("/webhooks/twilio/status").is_empty(),
        "callbacks blocked the response"
    );
    gateway.wait_for("/webhooks/twilio/status", 2).await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "two callbacks, each delayed 200 ms"
    );
    let stopped = tokio::time::timeout(Duration::from_secs(5), sandbox.shutdown()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
    Ok(())
}
