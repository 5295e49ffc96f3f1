//! What SendGrid refuses, the sandbox refuses too, with SendGrid's status, error messages and field
//! paths, and without the `help: null` SendGrid's schema does not allow.

use serde_json::{Value, json};

use super::sandbox;
use crate::support::{TestResult, mail, send_email};

/// A SendGrid error: the status and every `(field, message)`; `help` is never present.
async fn sendgrid_errors(
    response: reqwest::Response,
) -> Result<(u16, Vec<(Value, String)>), reqwest::Error> {
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    assert!(!errors.is_empty(), "{body}");
    let mut found = Vec::new();
    for error in errors {
        assert!(error.get("help").is_none(), "help present in {error}");
        let message = error["message"].as_str().unwrap_or_default().to_owned();
        found.push((error["field"].clone(), message));
    }
    Ok((status, found))
}

/// `mail("ada@example.com")` changed by `edit`, sent, and its refusal.
async fn refused_mail(
    base: &str,
    edit: impl FnOnce(&mut Value),
) -> Result<(u16, Vec<(Value, String)>), reqwest::Error> {
    let mut body = mail("ada@example.com");
    edit(&mut body);
    sendgrid_errors(send_email(&reqwest::Client::new(), base, &body).await?).await
}

#[tokio::test]
async fn sendgrid_refuses_more_than_1000_personalizations() -> TestResult {
    let sandbox = sandbox().await?;
    let (status, errors) = refused_mail(&sandbox.base_url(), |m| {
        let one = m["personalizations"][0].clone();
        m["personalizations"] = Value::Array(vec![one; 1001]);
    })
    .await?;
    assert_eq!(status, 400);
    assert_eq!(errors[0].0, "personalizations");
    assert!(
        errors[0]
            .1
            .contains("You have provided 1001 personalizations"),
        "{errors:?}"
    );
    Ok(())
}

#[tokio::test]
async fn sendgrid_refuses_custom_args_values_that_are_not_strings() -> TestResult {
    let sandbox = sandbox().await?;
    let base = sandbox.base_url();
    for (value, field) in [
        (
            json!({ "personalizations": [{ "to": [{ "email": "ada@example.com" }], "custom_args": { "n": 1 } }] }),
            "personalizations.0.custom_args",
        ),
        (json!({ "custom_args": { "flag": true } }), "custom_args"),
    ] {
        let (status, errors) = refused_mail(&base, |m| {
            if let (Some(m), Some(v)) = (m.as_object_mut(), value.as_object()) {
                m.extend(v.clone());
            }
        })
        .await?;
        assert_eq!(status, 400);
        let expected = (
            json!(field),
            "All values of custom arguments object must be strings".to_owned(),
        );
        assert_eq!(errors, [expected]);
    }
    Ok(())
}

#[tokio::test]
async fn sendgrid_refuses_reserved_headers() -> TestResult {
    let sandbox = sandbox().await?;
    let base = sandbox.base_url();
    for name in [
        "To",
        "from",
        "Subject",
        "Reply-To",
        "CC",
        "bcc",
        "Content-Type",
        "DKIM-Signature",
        "x-sg-id",
    ] {
        let (status, errors) = refused_mail(&base, |m| {
            m["headers"][name] = json!("x");
        })
        .await?;
        assert_eq!(status, 400);
        let expected = (
            json!("headers"),
            "Header can not be one of the reserved keys.".to_owned(),
        );
        assert_eq!(errors, [expected], "{name}");
        let (_, errors) = refused_mail(&base, |m| {
            m["personalizations"][0]["headers"] = json!({ name: "x" });
        })
        .await?;
        assert_eq!(errors[0].0, "personalizations.0.headers", "{name}");
    }
    // List-Unsubscribe, Message-ID and the like may be set (mail() carries List-Unsubscribe).
    let ok = send_email(&reqwest::Client::new(), &base, &mail("ada@example.com")).await?;
    assert_eq!(ok.status(), 202);
    Ok(())
}

#[tokio::test]
async fn sendgrid_refuses_more_than_10_categories() -> TestResult {
    let sandbox = sandbox().await?;
    let base = sandbox.base_url();
    let categories = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
    let (status, errors) = refused_mail(&base, |m| m["categories"] = json!(categories(11))).await?;
    assert_eq!(status, 400);
    assert_eq!(errors[0].0, "categories");
    assert!(
        errors[0].1.contains("You provided 11 categories"),
        "{errors:?}"
    );
    let mut ten = mail("ada@example.com");
    ten["categories"] = json!(categories(10));
    let ok = send_email(&reqwest::Client::new(), &base, &ten).await?;
    assert_eq!(ok.status(), 202);
    Ok(())
}

#[tokio::test]
async fn sendgrid_refuses_html_content_before_plain_text() -> TestResult {
    let sandbox = sandbox().await?;
    let base = sandbox.base_url();
    let (status, errors) = refused_mail(&base, |m| {
        m["content"] = json!([
            { "type": "text/html", "value": "<p>Hello</p>" },
            { "type": "text/plain", "value": "Hello" }
        ]);
    })
    .await?;
    assert_eq!(status, 400);
    assert_eq!(errors[0].0, "content");
    assert!(
        errors[0].1.starts_with("Following RFC 1341, section 7.2"),
        "{errors:?}"
    );
    // HTML alone, or plain text then HTML, is fine.
    let mut html_only = mail("ada@example.com");
    html_only["content"] = json!([{ "type": "text/html", "value": "<p>Hello</p>" }]);
    let ok = send_email(&reqwest::Client::new(), &base, &html_only).await?;
    assert_eq!(ok.status(), 202);
    Ok(())
}

#[tokio::test]
async fn sendgrid_refuses_a_body_that_is_not_json_by_content_type() -> TestResult {
    let sandbox = sandbox().await?;
    let answer = reqwest::Client::new()
        .post(format!("{}/v3/mail/send", sandbox.base_url()))
        .bearer_auth("SG.sandbox")
        .header("content-type", "text/plain")
        .body(mail("ada@example.com").to_string())
        .send()
        .await?;
    let (status, errors) = sendgrid_errors(answer).await?;
    assert_eq!(status, 415);
    assert_eq!(
        errors,
        [(
            Value::Null,
            "Content-Type should be application/json.".to_owned()
        )]
    );
    Ok(())
}

#[tokio::test]
async fn sendgrid_error_bodies_carry_no_help_key() -> TestResult {
    let sandbox = sandbox().await?;
    let base = sandbox.base_url();
    let unauthenticated = reqwest::Client::new()
        .post(format!("{base}/v3/mail/send"))
        .json(&mail("ada@example.com"))
        .send()
        .await?;
    assert_eq!(sendgrid_errors(unauthenticated).await?.0, 401);
    let (status, _) = refused_mail(&base, |m| m["from"] = json!({ "email": "nope" })).await?;
    assert_eq!(status, 400);
    Ok(())
}
