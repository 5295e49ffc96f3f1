//! SendGrid's signed Event Webhook: ECDSA P-256 / SHA-256 over `timestamp ‖ raw body`.
//!
//! The signature header is base64 of an ASN.1 DER `SEQUENCE{r, s}` (not raw r‖s); the timestamp
//! header is signed as the exact text received; the body is verified as the exact bytes received
//! (re-serialising the JSON would drop the CRLFs SendGrid signs). The public key is what
//! SendGrid's dashboard shows: base64 of a SubjectPublicKeyInfo DER, optionally PEM-wrapped.
//! SendGrid documents no replay window, so the freshness check ([`timestamp_is_fresh`]) is ours.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

/// The header carrying the base64 DER signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
/// The header carrying the signed unix timestamp.
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// Why the configured verification key is unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("providers.sendgrid.webhook_public_key is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("providers.sendgrid.webhook_public_key is not a P-256 SubjectPublicKeyInfo: {0}")]
    Format(String),
}

/// Parses the verification key: base64 SPKI DER (whitespace ignored), or the same as PEM.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text)
            .map_err(|e| KeyError::Format(e.to_string()));
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(compact)?;
    VerifyingKey::from_public_key_der(&der).map_err(|e| KeyError::Format(e.to_string()))
}

/// True when `signature_b64` is a valid signature of `timestamp ‖ body` under `key`.
pub fn verify(key: &VerifyingKey, timestamp: &str, body: &[u8], signature_b64: &str) -> bool {
    let Ok(der) = STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let Ok(signature) = Signature::from_der(&der) else {
        return false;
    };
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    key.verify(&signed, &signature).is_ok()
}

/// Whether the timestamp header's value lies within `tolerance` of `now` (unix seconds), in
/// either direction. `None` when the header is not a unix timestamp at all.
pub fn timestamp_is_fresh(timestamp: &str, now: i64, tolerance: Duration) -> Option<bool> {
    let at: i64 = timestamp.trim().parse().ok()?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    Some(now.abs_diff(at) <= tolerance.unsigned_abs())
}
