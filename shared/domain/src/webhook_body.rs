//! How a provider webhook's body is read: decided from its content type, in one place.
//!
//! A signature only protects what it covers. The gateway verifies a webhook over what this module
//! reads from the body, then forwards the body untouched with its content type
//! (`x-comms-content-type`); the status and replies workers read it again through the same
//! functions with that content type. So a worker acts on exactly what the signature covered: a
//! JSON body is never read as form fields (nor the reverse), and a content type this module does
//! not know is refused by the gateway (415) and rejected by a worker, never guessed.
//!
//! | endpoint | accepted |
//! |---|---|
//! | Twilio status and inbound | `application/x-www-form-urlencoded` (fields = the form's), `application/json` (fields = the object's scalar members) |
//! | SendGrid Event Webhook | `application/json` |
//! | SendGrid Inbound Parse | `multipart/form-data` |
//!
//! Parameters other than `charset` are ignored (a multipart `boundary` is read by the multipart
//! parser); a `charset` other than UTF-8 is refused, because the body is decoded as UTF-8.

use serde_json::Value;

/// `application/x-www-form-urlencoded`
pub const FORM: &str = "application/x-www-form-urlencoded";
/// `application/json`
pub const JSON: &str = "application/json";
/// `multipart/form-data`
pub const MULTIPART: &str = "multipart/form-data";

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Form,
    Json,
    Multipart,
}

impl Format {
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Form => FORM,
            Format::Json => JSON,
            Format::Multipart => MULTIPART,
        }
    }
}

/// What a Twilio webhook may be (status callbacks and inbound messages alike).
pub const TWILIO: &[Format] = &[Format::Form, Format::Json];
/// What SendGrid's Event Webhook posts.
pub const SENDGRID_EVENTS: &[Format] = &[Format::Json];
/// What SendGrid's Inbound Parse posts.
pub const SENDGRID_INBOUND: &[Format] = &[Format::Multipart];

/// Why a body cannot be read. [`BodyError::code`] is the stable reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the request has no content type (expected {expected})")]
    MissingContentType { expected: String },
    #[error("content type `{found}` is not accepted here (expected {expected})")]
    UnsupportedContentType { found: String, expected: String },
    #[error("charset `{found}` is not accepted (bodies are read as UTF-8)")]
    UnsupportedCharset { found: String },
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error(
        "the JSON body must be an object whose members are text, numbers, booleans or lists of them; {0}"
    )]
    UnsupportedJson(String),
}

impl BodyError {
    /// `unsupported_content_type` for the content type itself, `invalid_body` for its content.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::MissingContentType { .. }
            | BodyError::UnsupportedContentType { .. }
            | BodyError::UnsupportedCharset { .. } => "unsupported_content_type",
            BodyError::InvalidJson(_) | BodyError::UnsupportedJson(_) => "invalid_body",
        }
    }
}

/// The format of a body with this `Content-Type`, if it is one of `accepted`.
pub fn format(content_type: Option<&str>, accepted: &[Format]) -> Result<Format, BodyError> {
    let expected = || {
        accepted
            .iter()
            .map(|f| f.media_type())
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let Some(content_type) = content_type.filter(|ct| !ct.trim().is_empty()) else {
        return Err(BodyError::MissingContentType {
            expected: expected(),
        });
    };
    let mut parts = content_type.split(';');
    let media_type = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let Some(found) = accepted
        .iter()
        .copied()
        .find(|f| f.media_type() == media_type)
    else {
        return Err(BodyError::UnsupportedContentType {
            found: printable(&media_type),
            expected: expected(),
        });
    };
    for parameter in parts {
        if let Some((name, value)) = parameter.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
        {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(BodyError::UnsupportedCharset {
                    found: printable(charset),
                });
            }
        }
    }
    Ok(found)
}

/// A Twilio webhook body as the fields a worker acts on, and the format they were read from
/// (which decides how the signature covers them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    pub format: Format,
    pub fields: Vec<(String, String)>,
}

impl Fields {
    /// The first value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a Twilio webhook body: a form's fields, or a JSON object's scalar members (a list gives
/// one field per element; `null` gives none).
pub fn twilio_fields(content_type: Option<&str>, body: &[u8]) -> Result<Fields, BodyError> {
    let format = format(content_type, TWILIO)?;
    let fields = match format {
        Format::Form => form_urlencoded::parse(body).into_owned().collect(),
        Format::Json => json_fields(body)?,
        Format::Multipart => {
            return Err(BodyError::UnsupportedContentType {
                found: MULTIPART.into(),
                expected: format!("{FORM} or {JSON}"),
            });
        }
    };
    Ok(Fields { format, fields })
}

fn json_fields(body: &[u8]) -> Result<Vec<(String, String)>, BodyError> {
    // serde_json's messages name a position, never the content.
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    let Value::Object(members) = value else {
        return Err(BodyError::UnsupportedJson("it is not an object".into()));
    };
    let mut fields = Vec::with_capacity(members.len());
    for (name, value) in members {
        let values = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        for item in values {
            match item {
                Value::Null => {}
                Value::String(text) => fields.push((name.clone(), text)),
                Value::Bool(_) | Value::Number(_) => fields.push((name.clone(), item.to_string())),
                Value::Array(_) | Value::Object(_) => {
                    return Err(BodyError::UnsupportedJson(format!(
                        "member `{}` is nested",
                        printable(&name)
                    )));
                }
            }
        }
    }
    Ok(fields)
}

/// Untrusted text made safe to put in a reason or a log line: printable ASCII, at most 64 chars.
fn printable(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_follows_the_media_type_and_nothing_else() {
        assert_eq!(format(Some(FORM), TWILIO), Ok(Format::Form));
        assert_eq!(
            format(Some("Application/JSON; charset=UTF-8"), TWILIO),
            Ok(Format::Json)
        );
        assert_eq!(
            format(Some("multipart/form-data; boundary=x"), SENDGRID_INBOUND),
            Ok(Format::Multipart)
        );
        for refused in ["text/plain", "application/xml", "application/jsonx", "*/*"] {
            let error = format(Some(refused), TWILIO).expect_err(refused);
            assert_eq!(error.code(), "unsupported_content_type", "{refused}");
        }
        assert!(matches!(
            format(None, TWILIO),
            Err(BodyError::MissingContentType { .. })
        ));
        assert!(format(Some("  "), TWILIO).is_err());
        assert!(matches!(
            format(
                Some("application/x-www-form-urlencoded; charset=latin1"),
                TWILIO
            ),
            Err(BodyError::UnsupportedCharset { .. })
        ));
        // Each endpoint has its own list: JSON is not Inbound Parse, a form is no event batch.
        assert!(format(Some(JSON), SENDGRID_INBOUND).is_err());
        assert!(format(Some(FORM), SENDGRID_EVENTS).is_err());
    }

    #[test]
    fn a_form_is_read_as_its_fields() {
        let read = twilio_fields(Some(FORM), b"MessageSid=SM1&To=%2B1555&Body=a+b").expect("form");
        assert_eq!(read.format, Format::Form);
        assert_eq!(read.get("To"), Some("+1555"));
        assert_eq!(read.get("Body"), Some("a b"));
    }

    #[test]
    fn json_is_read_as_the_objects_scalar_members_never_as_a_form() {
        let body =
            br#"{"MessageSid":"SM1","ErrorCode":21610,"Final":true,"Gone":null,"Tag":["a","b"]}"#;
        let read = twilio_fields(Some(JSON), body).expect("json");
        assert_eq!(read.format, Format::Json);
        assert_eq!(read.get("MessageSid"), Some("SM1"));
        assert_eq!(read.get("ErrorCode"), Some("21610"));
        assert_eq!(read.get("Final"), Some("true"));
        assert_eq!(read.get("Gone"), None);
        let tags: Vec<_> = read.fields.iter().filter(|(k, _)| k == "Tag").collect();
        assert_eq!(tags.len(), 2);
        // A form-looking body sent as JSON is not JSON, and is not read as a form either.
        let form_as_json = twilio_fields(Some(JSON), b"MessageSid=SM1&MessageStatus=failed");
        assert_eq!(form_as_json.expect_err("not json").code(), "invalid_body");
        for refused in [&b"[1]"[..], br#"{"a":{"b":1}}"#, br#"{"a":[[1]]}"#] {
            let error = twilio_fields(Some(JSON), refused).expect_err("shape");
            assert!(matches!(error, BodyError::UnsupportedJson(_)), "{error}");
        }
    }

    #[test]
    fn errors_never_echo_more_than_a_short_printable_media_type() {
        let long = format!("text/{}\u{7}", "x".repeat(500));
        let error = format(Some(&long), TWILIO).expect_err("refused");
        let text = error.to_string();
        assert!(text.len() < 200, "{text}");
        assert!(!text.contains('\u{7}'));
        let secret = br#"{"Body":"+14155552671 my secret","x":"#;
        let error = twilio_fields(Some(JSON), secret).expect_err("invalid");
        assert!(!error.to_string().contains("4155552671"), "{error}");
    }
}
