//! Turning a provider's raw inbound payload (as the gateway published it) into one [`Inbound`].
//!
//! Twilio posts an inbound SMS as a form (or JSON); SendGrid Inbound Parse posts an email as
//! multipart/form-data with the raw header block in a `headers` field. The body is read by the
//! content type the gateway forwarded, through `comms_domain::webhook_body`, exactly as the
//! gateway read it to check the signature: what cannot be read as it says is refused, never
//! guessed (a JSON body is never read as a form).

use comms_domain::webhook_body::{self, BodyError};
use sha2::{Digest, Sha256};

/// One inbound message, provider-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub provider: &'static str,
    pub channel: &'static str,
    pub provider_message_id: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("twilio inbound payload lacks {0}")]
    Missing(&'static str),
    #[error("sendgrid inbound payload: {0}")]
    Multipart(String),
    #[error("unknown inbound routing key {0}")]
    UnknownSource(String),
}

impl ParseError {
    /// The reason code a rejection carries.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Body(error) if error.code() == "unsupported_content_type" => {
                "unsupported_content_type"
            }
            _ => "unreadable_inbound",
        }
    }
}

/// Reads one inbound payload; `content_type` is the one the gateway forwarded, if any.
pub async fn parse(
    routing_key: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Inbound, ParseError> {
    match routing_key {
        "inbound.twilio" => twilio(content_type, body),
        "inbound.sendgrid" => sendgrid(content_type, body).await,
        other => Err(ParseError::UnknownSource(other.to_string())),
    }
}

fn twilio(content_type: Option<&str>, body: &[u8]) -> Result<Inbound, ParseError> {
    let fields = webhook_body::twilio_fields(content_type, body)?;
    let get = |name: &'static str| {
        fields
            .get(name)
            .map(str::to_string)
            .ok_or(ParseError::Missing(name))
    };
    Ok(Inbound {
        provider: "twilio",
        channel: "sms",
        provider_message_id: get("MessageSid").or_else(|_| get("SmsSid"))?,
        from: get("From")?,
        to: vec![get("To")?],
        subject: String::new(),
        body: get("Body").unwrap_or_default(),
        headers: Vec::new(),
    })
}

async fn sendgrid(content_type: Option<&str>, body: &[u8]) -> Result<Inbound, ParseError> {
    webhook_body::format(content_type, webhook_body::SENDGRID_INBOUND)?;
    let content_type = content_type.unwrap_or_default();
    let boundary =
        multer::parse_boundary(content_type).map_err(|e| ParseError::Multipart(e.to_string()))?;
    let bytes = bytes::Bytes::copy_from_slice(body);
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut fields: Vec<(String, String)> = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ParseError::Multipart(e.to_string()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        if field.file_name().is_some() {
            continue; // attachments stay out of the reply record
        }
        let text = field
            .text()
            .await
            .map_err(|e| ParseError::Multipart(e.to_string()))?;
        fields.push((name, text));
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let headers = header_block(&get("headers"));
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut to: Vec<String> = serde_json::from_str::<serde_json::Value>(&get("envelope"))
        .ok()
        .and_then(|e| e.get("to").and_then(|t| t.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    to.extend(get("to").split(',').map(address).filter(|a| !a.is_empty()));
    let from = address(&get("from"));
    if from.is_empty() {
        return Err(ParseError::Multipart("no from address".into()));
    }
    let body = get("text");
    // Inbound Parse carries no id of its own: the Message-ID, else a fingerprint of the content.
    let provider_message_id = header("message-id").unwrap_or_else(|| {
        let digest = Sha256::digest(
            [
                from.as_bytes(),
                get("subject").as_bytes(),
                body.as_bytes(),
                get("headers").as_bytes(),
            ]
            .concat(),
        );
        digest.iter().map(|b| format!("{b:02x}")).collect()
    });
    Ok(Inbound {
        provider: "sendgrid",
        channel: "email",
        provider_message_id,
        from,
        to,
        subject: get("subject"),
        body,
        headers,
    })
}

/// `Dana <dana@example.com>` → `dana@example.com` (lower-cased).
pub fn address(text: &str) -> String {
    let text = text.trim();
    let inner = match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    };
    inner.trim().to_lowercase()
}

/// An RFC 5322 header block, unfolded, as (name, value) pairs.
fn header_block(block: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_folded_headers() {
        assert_eq!(address("Dana <Dana@Example.com>"), "dana@example.com");
        assert_eq!(address(" plain@example.com "), "plain@example.com");
        let h =
            header_block("Subject: hi\r\nReferences: <a@x>\r\n <b@x>\r\nAuto-Submitted: no\r\n");
        assert_eq!(h[1], ("References".to_string(), "<a@x> <b@x>".to_string()));
    }

    #[tokio::test]
    async fn a_twilio_form_is_read() {
        let body = b"MessageSid=SM1&From=%2B14155552671&To=%2B15005550006&Body=STOP";
        let inbound = parse("inbound.twilio", Some(webhook_body::FORM), body)
            .await
            .expect("parses");
        assert_eq!(
            (inbound.from.as_str(), inbound.body.as_str()),
            ("+14155552671", "STOP")
        );
    }

    #[tokio::test]
    async fn a_twilio_body_is_read_by_its_content_type_or_refused() {
        let json =
            br#"{"MessageSid":"SM1","From":"+14155552671","To":"+15005550006","Body":"START"}"#;
        let inbound = parse("inbound.twilio", Some(webhook_body::JSON), json)
            .await
            .expect("json parses");
        assert_eq!(inbound.body, "START");
        // A form sent as JSON is not read as a form; nor is anything without a known type.
        let form = b"MessageSid=SM1&From=%2B14155552671&To=%2B15005550006&Body=STOP";
        let as_json = parse("inbound.twilio", Some(webhook_body::JSON), form).await;
        assert_eq!(as_json.expect_err("not json").code(), "unreadable_inbound");
        for other in [None, Some("text/plain")] {
            let refused = parse("inbound.twilio", other, form).await;
            assert_eq!(
                refused.expect_err("refused").code(),
                "unsupported_content_type"
            );
        }
    }
}
