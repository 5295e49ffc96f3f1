//! What Twilio checks before it creates a message, in the order it answers them: the caller's
//! credentials against the account, the account SID in the path, then the form parameters. Each
//! refusal carries Twilio's status, error code and message, so a sender pointed at the sandbox fails
//! exactly where it would fail against the real API instead of passing every test.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::error;
use crate::SandboxConfig;
use crate::ids::is_twilio_sid as is_sid;

/// The longest `StatusCallback` Twilio takes (error 21609).
const MAX_CALLBACK_CHARS: usize = 4000;

/// A create-message request that passed every check.
pub(super) struct SmsRequest {
    pub to: String,
    pub from: Option<String>,
    pub service_sid: Option<String>,
    pub body: String,
    pub status_callback: Option<String>,
    /// The form parameters as received (repeated names become arrays), for `/sandbox/messages`.
    pub params: Value,
}

pub(crate) fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// What Twilio requires of a `StatusCallback`: an absolute `http`/`https` URL with a host name
/// that has no underscore, at most 4000 characters long.
fn is_callback_url(value: &str) -> bool {
    if value.chars().count() > MAX_CALLBACK_CHARS {
        return false;
    }
    let Ok(url) = reqwest::Url::parse(value) else {
        return false;
    };
    matches!(url.scheme(), "http" | "https")
        && url
            .host_str()
            .is_some_and(|h| !h.is_empty() && !h.contains('_'))
}

/// Why Twilio would not create the message: its HTTP status, error code and message.
#[derive(Debug)]
pub(super) struct Refusal {
    status: StatusCode,
    code: u32,
    message: String,
}

impl Refusal {
    fn bad(code: u32, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    fn unauthorized(message: &str) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: 20003,
            message: message.to_owned(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = error(self.status, self.code, self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        response
    }
}

/// The `(user, password)` of a well-formed basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Basic auth must name the configured account and carry its token (401, code 20003), and the
/// path must name that same account: a malformed SID is an unknown resource (404, code 20404).
pub(super) fn authenticate(
    headers: &HeaderMap,
    config: &SandboxConfig,
    path_sid: &str,
) -> Result<(), Refusal> {
    let Some((user, password)) = basic_credentials(headers) else {
        return Err(Refusal::unauthorized(
            "Authentication Error - No credentials provided",
        ));
    };
    if user != config.twilio_account_sid || password != config.twilio_auth_token {
        return Err(Refusal::unauthorized("Authenticate"));
    }
    if !is_sid(path_sid, "AC") {
        let message = format!(
            "The requested resource /2010-04-01/Accounts/{path_sid}/Messages.json was not found"
        );
        return Err(Refusal {
            status: StatusCode::NOT_FOUND,
            code: 20404,
            message,
        });
    }
    if path_sid != user {
        return Err(Refusal::unauthorized("Authenticate"));
    }
    Ok(())
}

fn as_json(params: &[(String, String)]) -> Value {
    let mut object = Map::new();
    for (name, value) in params {
        match object.get_mut(name) {
            None => {
                object.insert(name.clone(), Value::String(value.clone()));
            }
            Some(Value::Array(values)) => values.push(Value::String(value.clone())),
            Some(first) => *first = Value::Array(vec![first.take(), Value::String(value.clone())]),
        }
    }
    Value::Object(object)
}

/// Checks the form parameters like Twilio: `To` (21604, 21211), a sender (21603), a `From` in
/// E.164 (21212), a `MessagingServiceSid` of the form `MG` + 32 hex (21705), `Body` (21602, 21617)
/// and `StatusCallback` (21609). A body that is not form-encoded has no parameters for Twilio, so it
/// fails as a request without `To`.
pub(super) fn check(params: &[(String, String)]) -> Result<SmsRequest, Refusal> {
    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let Some(to) = field("To") else {
        return Err(Refusal::bad(21604, "A 'To' phone number is required."));
    };
    if !is_e164(&to) {
        return Err(Refusal::bad(
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        ));
    }
    let from = field("From");
    let service_sid = field("MessagingServiceSid");
    if from.is_none() && service_sid.is_none() {
        return Err(Refusal::bad(21603, "A 'From' phone number is required."));
    }
    if let Some(from) = &from
        && !is_e164(from)
    {
        let message = format!(
            "The 'From' number {from} is not a valid phone number, shortcode, or alphanumeric sender ID."
        );
        return Err(Refusal::bad(21212, message));
    }
    if let Some(sid) = &service_sid
        && !is_sid(sid, "MG")
    {
        return Err(Refusal::bad(21705, "The Messaging Service is invalid"));
    }
    let Some(body) = field("Body") else {
        return Err(Refusal::bad(21602, "Message body is required."));
    };
    if body.chars().count() > 1600 {
        let message = "The concatenated message body exceeds the 1600 character limit.";
        return Err(Refusal::bad(21617, message));
    }
    let status_callback = field("StatusCallback");
    if let Some(url) = &status_callback
        && !is_callback_url(url)
    {
        return Err(Refusal::bad(21609, "Invalid 'StatusCallback'"));
    }
    Ok(SmsRequest {
        to,
        from,
        service_sid,
        body,
        status_callback,
        params: as_json(params),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(is_e164("+15005550006"));
        assert!(is_e164("+12345678"));
        assert!(!is_e164("+1234567"));
        assert!(!is_e164("15005550006"));
        assert!(!is_e164("+1500555000612345"));
        assert!(!is_e164("+1500-555-0006"));
        assert!(is_sid("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "AC"));
        assert!(is_sid("MG0123456789ABCDEFabcdef0123456789", "MG"));
        assert!(!is_sid("ACsandbox0000000000000000000000000", "AC"));
        assert!(!is_sid("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "MG"));
        assert!(!is_sid("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "AC"));
        assert!(is_callback_url(
            "https://hooks.example.com/twilio/status?x=1"
        ));
        assert!(is_callback_url(
            "http://127.0.0.1:8080/webhooks/twilio/status"
        ));
        assert!(!is_callback_url("/webhooks/twilio/status"));
        assert!(!is_callback_url("hooks.example.com/status"));
        assert!(!is_callback_url("ftp://hooks.example.com/status"));
        assert!(!is_callback_url("https://my_hooks.example.com/status"));
        let long = format!("https://example.com/{}", "a".repeat(MAX_CALLBACK_CHARS));
        assert!(!is_callback_url(&long));
    }

    #[test]
    fn repeated_parameters_become_arrays() {
        let params = [
            ("To".to_owned(), "+15005550001".to_owned()),
            ("MediaUrl".to_owned(), "https://a".to_owned()),
            ("MediaUrl".to_owned(), "https://b".to_owned()),
        ];
        let json = as_json(&params);
        assert_eq!(json["To"], "+15005550001");
        assert_eq!(
            json["MediaUrl"],
            serde_json::json!(["https://a", "https://b"])
        );
    }
}
