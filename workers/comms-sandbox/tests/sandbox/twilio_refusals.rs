//! What Twilio refuses, the sandbox refuses too, with Twilio's status, error code and body: a
//! sender that would fail in production fails here first.

use comms_sandbox::{RunningSandbox, SandboxConfig};
use serde_json::{Value, json};

use super::{messages, sandbox};
use crate::support::{ACCOUNT, TOKEN, TestResult, send_sms, twilio_url};

const OTHER_ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

/// Posts a form to the Twilio face as `account` with `credentials`.
async fn post_sms(
    base: &str,
    account: &str,
    credentials: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> reqwest::Result<reqwest::Response> {
    let url = format!("{base}/2010-04-01/Accounts/{account}/Messages.json");
    let mut request = reqwest::Client::new().post(url).form(form);
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    request.send().await
}

const SMS: [(&str, &str); 3] = [
    ("To", "+15005550001"),
    ("From", "+15005550006"),
    ("Body", "hi"),
];

/// A Twilio error: the status, and the body's `code` (whose `status` and `more_info` must agree).
async fn twilio_error(response: reqwest::Response) -> Result<(u16, Value), reqwest::Error> {
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    assert_eq!(body["status"], status, "{body}");
    let code = body["code"].clone();
    assert_eq!(
        body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
    assert!(body["message"].is_string(), "{body}");
    Ok((status, body))
}

#[tokio::test]
async fn twilio_refuses_credentials_that_are_not_its_account() -> TestResult {
    let sandbox = sandbox().await?;
    let base = sandbox.base_url();
    let none = post_sms(&base, ACCOUNT, None, &SMS).await?;
    let (status, body) = twilio_error(none).await?;
    assert_eq!((status, body["code"].clone()), (401, json!(20003)));
    assert_eq!(
        body["message"],
        "Authentication Error - No credentials provided"
    );
    for credentials in [(ACCOUNT, "not-the-token"), (OTHER_ACCOUNT, TOKEN)] {
        let wrong = post_sms(&base, credentials.0, Some(credentials), &SMS).await?;
        let (status, body) = twilio_error(wrong).await?;
        assert_eq!(
            (status, body["code"].clone(), body["message"].clone()),
            (401, json!(20003), json!("Authenticate")),
            "{credentials:?}"
        );
    }
    // The right credentials, but another account's path.
    let foreign = post_sms(&base, OTHER_ACCOUNT, Some((ACCOUNT, TOKEN)), &SMS).await?;
    assert_eq!(twilio_error(foreign).await?.1["code"], 20003);
    assert!(messages(&reqwest::Client::new(), &base).await?.is_empty());

    // A sandbox configured with another account takes exactly that one.
    let mut config = SandboxConfig::generated()?;
    config.twilio_account_sid = OTHER_ACCOUNT.to_owned();
    config.twilio_auth_token = "other-token".to_owned();
    let other = RunningSandbox::start(config).await?;
    let url = other.base_url();
    let ok = post_sms(
        &url,
        OTHER_ACCOUNT,
        Some((OTHER_ACCOUNT, "other-token")),
        &SMS,
    )
    .await?;
    assert_eq!(ok.status(), 201);
    let default = post_sms(&url, ACCOUNT, Some((ACCOUNT, TOKEN)), &SMS).await?;
    assert_eq!(default.status(), 401);
    Ok(())
}

#[tokio::test]
async fn twilio_refuses_an_account_sid_not_of_the_documented_form() -> TestResult {
    let sandbox = sandbox().await?;
    let base = sandbox.base_url();
    for malformed in [
        "ACsandbox0000000000000000000000000",
        "AC0000",
        "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let mut config = SandboxConfig::generated()?;
        config.twilio_account_sid = malformed.to_owned();
        let misconfigured = RunningSandbox::start(config).await?;
        let answer = post_sms(
            &misconfigured.base_url(),
            malformed,
            Some((malformed, TOKEN)),
            &SMS,
        )
        .await?;
        let (status, body) = twilio_error(answer).await?;
        assert_eq!(
            (status, body["code"].clone()),
            (404, json!(20404)),
            "{malformed}"
        );
    }
    // Well-formed but another account: the credentials do not open it.
    let answer = post_sms(&base, OTHER_ACCOUNT, Some((ACCOUNT, TOKEN)), &SMS).await?;
    assert_eq!(answer.status(), 401);
    Ok(())
}

#[tokio::test]
async fn twilio_refuses_a_from_that_is_not_e164() -> TestResult {
    let sandbox = sandbox().await?;
    let http = reqwest::Client::new();
    for from in ["15005550006", "+1 500 555 0006", "Acme"] {
        let answer = post_sms(
            &sandbox.base_url(),
            ACCOUNT,
            Some((ACCOUNT, TOKEN)),
            &[("To", "+15005550001"), ("From", from), ("Body", "hi")],
        )
        .await?;
        let (status, body) = twilio_error(answer).await?;
        assert_eq!(
            (status, body["code"].clone()),
            (400, json!(21212)),
            "{from}"
        );
    }
    assert!(messages(&http, &sandbox.base_url()).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn twilio_checks_the_messaging_service_sid_form() -> TestResult {
    let sandbox = sandbox().await?;
    let (http, base) = (reqwest::Client::new(), sandbox.base_url());
    for sid in ["MGsandbox", "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "MG123"] {
        let form = [
            ("To", "+15005550001"),
            ("MessagingServiceSid", sid),
            ("Body", "hi"),
        ];
        let answer = post_sms(&base, ACCOUNT, Some((ACCOUNT, TOKEN)), &form).await?;
        let (status, body) = twilio_error(answer).await?;
        assert_eq!((status, body["code"].clone()), (400, json!(21705)), "{sid}");
    }
    let service = "MG0123456789abcdef0123456789abcdef";
    let form = [
        ("To", "+15005550001"),
        ("MessagingServiceSid", service),
        ("Body", "hi"),
    ];
    let answer = post_sms(&base, ACCOUNT, Some((ACCOUNT, TOKEN)), &form).await?;
    assert_eq!(answer.status(), 201);
    assert_eq!(messages(&http, &base).await?[0].from, service);
    Ok(())
}

#[tokio::test]
async fn twilio_refuses_a_status_callback_that_is_not_an_absolute_url() -> TestResult {
    let sandbox = sandbox().await?;
    let (http, base) = (reqwest::Client::new(), sandbox.base_url());
    for callback in [
        "/webhooks/twilio/status",
        "gateway.example.com/webhooks/twilio/status",
        "ftp://gateway.example.com/status",
        "https://my_gateway.example.com/status",
    ] {
        let answer = send_sms(
            &http,
            &base,
            "+15005550001",
            &[("StatusCallback", callback)],
        )
        .await?;
        let (status, body) = twilio_error(answer).await?;
        assert_eq!(
            (status, body["code"].clone()),
            (400, json!(21609)),
            "{callback}"
        );
    }
    let fine = [(
        "StatusCallback",
        "https://gateway.example.com/webhooks/twilio/status",
    )];
    assert_eq!(
        send_sms(&http, &base, "+15005550001", &fine)
            .await?
            .status(),
        201
    );
    Ok(())
}

#[tokio::test]
async fn twilio_reads_no_parameters_from_a_body_that_is_not_a_form() -> TestResult {
    let sandbox = sandbox().await?;
    let answer = reqwest::Client::new()
        .post(twilio_url(&sandbox.base_url()))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .json(&json!({ "To": "+15005550001", "From": "+15005550006", "Body": "hi" }))
        .send()
        .await?;
    let (status, body) = twilio_error(answer).await?;
    assert_eq!((status, body["code"].clone()), (400, json!(21604)));
    Ok(())
}
