//! End-to-end tests of the sandbox over real HTTP: both provider faces, the inspection API, fault
//! injection, signed callbacks to a fake gateway, and graceful shutdown.

mod support;

use std::time::Duration;

use comms_sandbox::{Provider, RecordedMessage, RunningSandbox, SandboxConfig};
use serde_json::{Value, json};
use support::{ACCOUNT, TestResult, mail, send_email, send_sms, twilio_url};

async fn sandbox() -> Result<RunningSandbox, Box<dyn std::error::Error + Send + Sync>> {
    Ok(RunningSandbox::start(SandboxConfig::generated()?).await?)
}

async fn messages(http: &reqwest::Client, base: &str) -> reqwest::Result<Vec<RecordedMessage>> {
    http.get(format!("{base}/sandbox/messages"))
        .send()
        .await?
        .json()
        .await
}

async fn add_fault(http: &reqwest::Client, base: &str, fault: Value) -> reqwest::Result<Value> {
    let response = http
        .post(format!("{base}/sandbox/faults"))
        .json(&fault)
        .send()
        .await?;
    assert_eq!(response.status(), 201, "fault not armed");
    response.json().await
}

#[tokio::test]
async fn sends_are_recorded_filtered_and_cleared() -> TestResult {
    let sandbox = sandbox().await?;
    let (http, base) = (reqwest::Client::new(), sandbox.base_url());
    let health = http.get(format!("{base}/sandbox/healthz")).send().await?;
    assert_eq!(
        (health.status().as_u16(), health.text().await?),
        (200, "ok".to_owned())
    );

    let sms = send_sms(&http, &base, "+15005550001", &[]).await?;
    assert_eq!(sms.status(), 201);
    let resource: Value = sms.json().await?;
    let sid = resource["sid"].as_str().ok_or("no sid")?.to_owned();
    assert!(sid.starts_with("SM") && sid.len() == 34, "{sid}");
    assert_eq!(resource["status"], "queued");
    assert_eq!(resource["num_segments"], "1");
    assert_eq!(resource["account_sid"], ACCOUNT);
    assert_eq!(resource["to"], "+15005550001");
    assert_eq!(resource["from"], "+15005550006");
    assert!(resource["error_code"].is_null());

    let email = send_email(&http, &base, &mail("ada@example.com")).await?;
    assert_eq!(email.status(), 202);
    let message_id = email.headers()["x-message-id"].to_str()?.to_owned();
    assert_eq!(message_id.len(), 22);
    assert!(email.text().await?.is_empty());

    let all = messages(&http, &base).await?;
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].provider, all[0].id.as_str()),
        (Provider::Twilio, sid.as_str())
    );
    assert_eq!(all[0].body, "Your code is 123456");
    assert!(all[0].subject.is_none() && all[0].custom_args.is_none());
    assert_eq!(
        (all[1].provider, all[1].id.as_str()),
        (Provider::Sendgrid, message_id.as_str())
    );
    assert_eq!(all[1].to, "ada@example.com");
    assert_eq!(all[1].subject.as_deref(), Some("Welcome"));
    assert_eq!(all[1].body, "Hello there");
    assert_eq!(
        all[1].custom_args.as_ref().map(|a| a["comms_id"].clone()),
        Some(json!("m-42"))
    );
    assert!(
        all[1]
            .headers
            .as_ref()
            .is_some_and(|h| h.contains_key("List-Unsubscribe"))
    );

    let url = format!("{base}/sandbox/messages");
    let only_sms: Vec<RecordedMessage> = http
        .get(&url)
        .query(&[("to", "+15005550001")])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(only_sms.len(), 1);
    assert_eq!(only_sms[0].id, sid);

    assert_eq!(http.delete(&url).send().await?.status(), 204);
    assert!(messages(&http, &base).await?.is_empty());
    sandbox.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn rate_limit_fault_applies_once_then_succeeds() -> TestResult {
    let sandbox = sandbox().await?;
    let (http, base) = (reqwest::Client::new(), sandbox.base_url());
    let fault = json!({ "channel": "sms", "status": 429, "retry_after": 7, "times": 1 });
    let armed = add_fault(&http, &base, fault).await?;
    assert!(armed["id"].is_string());

    let limited = send_sms(&http, &base, "+15005550001", &[]).await?;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    let error: Value = limited.json().await?;
    assert_eq!(
        (error["code"].clone(), error["status"].clone()),
        (json!(20429), json!(429))
    );
    assert!(
        messages(&http, &base).await?.is_empty(),
        "faulted send was recorded"
    );

    assert_eq!(
        send_sms(&http, &base, "+15005550001", &[]).await?.status(),
        201
    );
    let left: Vec<Value> = http
        .get(format!("{base}/sandbox/faults"))
        .send()
        .await?
        .json()
        .await?;
    assert!(left.is_empty(), "fault with times=1 not consumed: {left:?}");

    // The email face answers the same fault kind with SendGrid's shape.
    add_fault(
        &http,
        &base,
        json!({ "channel": "email", "status": 429, "retry_after": 3, "times": 1 }),
    )
    .await?;
    let limited = send_email(&http, &base, &mail("ada@example.com")).await?;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "3");
    let error: Value = limited.json().await?;
    assert_eq!(error["errors"][0]["message"], "too many requests");
    assert_eq!(
        send_email(&http, &base, &mail("ada@example.com"))
            .await?
            .status(),
        202
    );
    assert_eq!(messages(&http, &base).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn permanent_21610_fault_hits_only_its_recipient_until_cleared() -> TestResult {
    let sandbox = sandbox().await?;
    let (http, base) = (reqwest::Client::new(), sandbox.base_url());
    let fault = json!({ "channel": "sms", "recipient": "+15005550009", "status": 400, "error_code": 21610 });
    add_fault(&http, &base, fault).await?;
    for _ in 0..2 {
        let refused = send_sms(&http, &base, "+15005550009", &[]).await?;
        assert_eq!(refused.status(), 400);
        let error: Value = refused.json().await?;
        assert_eq!(error["code"], 21610);
        assert_eq!(
            error["message"],
            "Attempt to send to unsubscribed recipient"
        );
        assert_eq!(
            error["more_info"],
            "https://www.twilio.com/docs/errors/21610"
        );
        assert_eq!(error["status"], 400);
    }
    assert_eq!(
        send_sms(&http, &base, "+15005550001", &[]).await?.status(),
        201
    );
    assert_eq!(
        http.delete(format!("{base}/sandbox/faults"))
            .send()
            .await?
            .status(),
        204
    );
    assert_eq!(
        send_sms(&http, &base, "+15005550009", &[]).await?.status(),
        201
    );
    Ok(())
}

#[tokio::test]
async fn invalid_requests_get_provider_errors() -> TestResult {
    let sandbox = sandbox().await?;
    let (http, base) = (reqwest::Client::new(), sandbox.base_url());
    let bad_to = send_sms(&http, &base, "5550001", &[]).await?;
    assert_eq!(bad_to.status(), 400);
    let error: Value = bad_to.json().await?;
    assert_eq!(error["code"], 21211);
    assert_eq!(
        error["message"],
        "The 'To' number 5550001 is not a valid phone number."
    );
    assert_eq!(
        error["more_info"],
        "https://www.twilio.com/docs/errors/21211"
    );

    let form = [
        ("To", "+15005550001"),
        ("From", "+15005550006"),
        ("Body", "hi"),
    ];
    let unauthenticated = http.post(twilio_url(&base)).form(&form).send().await?;
    assert_eq!(unauthenticated.status(), 401);
    let error: Value = unauthenticated.json().await?;
    assert_eq!(
        (error["code"].clone(), error["status"].clone()),
        (json!(20003), json!(401))
    );

    let email_url = format!("{base}/v3/mail/send");
    let unauthenticated = http
        .post(&email_url)
        .json(&mail("ada@example.com"))
        .send()
        .await?;
    assert_eq!(unauthenticated.status(), 401);
    let error: Value = unauthenticated.json().await?;
    assert!(error["errors"][0]["message"].is_string());
    assert!(error["errors"][0]["field"].is_null());

    let mut bad = mail("not-an-address");
    bad.as_object_mut()
        .ok_or("mail is an object")?
        .remove("from");
    let invalid = send_email(&http, &base, &bad).await?;
    assert_eq!(invalid.status(), 400);
    let error: Value = invalid.json().await?;
    let fields: Vec<&str> = error["errors"]
        .as_array()
        .ok_or("errors")?
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"personalizations.0.to.0.email") && fields.contains(&"from.email"),
        "{fields:?}"
    );
    assert!(messages(&http, &base).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn timeout_fault_hangs_past_the_client_timeout() -> TestResult {
    let sandbox = sandbox().await?;
    let (http, base) = (reqwest::Client::new(), sandbox.base_url());
    add_fault(&http, &base, json!({ "timeout_ms": 3000, "times": 1 })).await?;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()?;
    let err = send_sms(&impatient, &base, "+15005550001", &[])
        .await
        .err()
        .ok_or("expected a timeout")?;
    assert!(err.is_timeout(), "{err}");
    assert_eq!(
        send_sms(&http, &base, "+15005550001", &[]).await?.status(),
        201
    );
    // Shutdown is not held up by the still-hanging faulted request.
    tokio::time::timeout(Duration::from_secs(2), sandbox.shutdown()).await??;
    Ok(())
}

// In a subfolder so Cargo builds a single integration-test binary.
#[path = "sandbox/callbacks.rs"]
mod callbacks;
#[path = "sandbox/sendgrid_refusals.rs"]
mod sendgrid_refusals;
#[path = "sandbox/twilio_refusals.rs"]
mod twilio_refusals;
