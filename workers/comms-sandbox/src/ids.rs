//! Provider-shaped random identifiers, so clients that parse or store them see the real formats:
//! Twilio SIDs (`SM` + 32 hex) and SendGrid message and event ids (URL-safe base64).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

/// A Twilio SID: two-letter prefix (`SM`, `AC`, …) followed by 32 lowercase hex digits.
pub fn twilio_sid(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let mut sid = String::with_capacity(prefix.len() + 32);
    sid.push_str(prefix);
    for b in bytes {
        sid.push_str(&format!("{b:02x}"));
    }
    sid
}

/// `prefix` followed by 32 hex digits (either case): the documented form of a Twilio SID, e.g.
/// `^AC[0-9a-fA-F]{32}$` for an account.
pub fn is_twilio_sid(value: &str, prefix: &str) -> bool {
    value
        .strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A SendGrid `X-Message-Id`: 22 URL-safe base64 characters (16 random bytes).
pub fn sendgrid_message_id() -> String {
    random_b64(16)
}

/// A SendGrid `sg_event_id`: URL-safe, unique per event.
pub fn sendgrid_event_id() -> String {
    random_b64(24)
}

fn random_b64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_provider_shapes() {
        let sid = twilio_sid("SM");
        assert_eq!(sid.len(), 34);
        assert!(sid.starts_with("SM"));
        assert!(sid[2..].chars().all(|c| c.is_ascii_hexdigit()));
        let id = sendgrid_message_id();
        assert_eq!(id.len(), 22);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(sendgrid_event_id(), sendgrid_event_id());
    }
}
