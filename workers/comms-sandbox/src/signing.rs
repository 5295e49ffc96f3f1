//! Webhook signatures for both providers: the sandbox signs its callbacks with these, and the same
//! verification functions are tested here against the providers' official vectors, so a callback
//! that verifies here verifies at a correct gateway.
//!
//! - Twilio: `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, URL + sorted name/value pairs)).
//! - SendGrid: ECDSA P-256/SHA-256 over `timestamp ‖ raw body`, DER signature in base64, public
//!   key as base64 SubjectPublicKeyInfo DER.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rand::RngCore;
use sha1::Sha1;

pub const TWILIO_SIGNATURE_HEADER: &str = "X-Twilio-Signature";
pub const SENDGRID_SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
pub const SENDGRID_TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// Why a key could not be loaded or produced.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key is neither PEM nor valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("not a P-256 key in PKCS#8 or SEC1 form: {0}")]
    Format(String),
}

fn twilio_mac<S: AsRef<str>>(auth_token: &str, url: &str, params: &[(S, S)]) -> Hmac<Sha1> {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    // Names sorted; each name's values sorted and de-duplicated (as the official SDKs do).
    pairs.sort_unstable();
    pairs.dedup();
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in pairs {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The `X-Twilio-Signature` Twilio would send for a form POST of `params` to `url`.
pub fn twilio_signature<S: AsRef<str>>(auth_token: &str, url: &str, params: &[(S, S)]) -> String {
    STANDARD.encode(twilio_mac(auth_token, url, params).finalize().into_bytes())
}

/// Checks `signature` (constant time) against the exact `url` and all received `params`.
pub fn verify_twilio_signature<S: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(S, S)],
    signature: &str,
) -> bool {
    let Ok(expected) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    twilio_mac(auth_token, url, params)
        .verify_slice(&expected)
        .is_ok()
}

/// The SendGrid Event Webhook signing key (the private half SendGrid keeps).
#[derive(Clone)]
pub struct SendGridSigner {
    key: SigningKey,
    public_key: String,
}

impl std::fmt::Debug for SendGridSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendGridSigner")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl SendGridSigner {
    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        // A random 32-byte string is a valid scalar with overwhelming probability; retry if not.
        for _ in 0..8 {
            rand::rng().fill_bytes(&mut bytes);
            if let Ok(key) = SigningKey::from_slice(&bytes) {
                return Self::from_key(key);
            }
        }
        Err(KeyError::Format(
            "could not draw a valid P-256 scalar".into(),
        ))
    }

    /// Loads a private key given as PEM (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`) or as
    /// base64 of the PKCS#8 (or SEC1) DER.
    pub fn from_encoded(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let key = if text.contains("-----BEGIN EC PRIVATE KEY") {
            p256::SecretKey::from_sec1_pem(text)
                .map(SigningKey::from)
                .map_err(|e| KeyError::Format(e.to_string()))?
        } else if text.starts_with("-----BEGIN") {
            SigningKey::from_pkcs8_pem(text).map_err(|e| KeyError::Format(e.to_string()))?
        } else {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let der = STANDARD.decode(compact)?;
            SigningKey::from_pkcs8_der(&der)
                .or_else(|_| p256::SecretKey::from_sec1_der(&der).map(SigningKey::from))
                .map_err(|e| KeyError::Format(e.to_string()))?
        };
        Self::from_key(key)
    }

    fn from_key(key: SigningKey) -> Result<Self, KeyError> {
        let der = key
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| KeyError::Format(e.to_string()))?;
        let public_key = STANDARD.encode(der.as_bytes());
        Ok(Self { key, public_key })
    }

    /// The public key as SendGrid shows it: base64 of the SubjectPublicKeyInfo DER.
    pub fn public_key_base64(&self) -> &str {
        &self.public_key
    }

    /// Base64 DER signature over `timestamp ‖ body`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let signature: Signature = self.key.sign(&signed_bytes(timestamp, body));
        STANDARD.encode(signature.to_der().as_bytes())
    }
}

fn signed_bytes(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    message
}

/// Parses a SendGrid verification key: base64 SPKI DER, or the same PEM-wrapped.
pub fn sendgrid_verifying_key(public_key: &str) -> Result<VerifyingKey, KeyError> {
    let public_key = public_key.trim();
    if public_key.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(public_key)
            .map_err(|e| KeyError::Format(e.to_string()));
    }
    let der = STANDARD.decode(public_key)?;
    VerifyingKey::from_public_key_der(&der).map_err(|e| KeyError::Format(e.to_string()))
}

/// Verifies a SendGrid Event Webhook signature over the raw body bytes.
pub fn verify_sendgrid_signature(
    key: &VerifyingKey,
    timestamp: &str,
    body: &[u8],
    signature_b64: &str,
) -> bool {
    let Ok(der) = STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let Ok(signature) = Signature::from_der(&der) else {
        return false;
    };
    key.verify(&signed_bytes(timestamp, body), &signature)
        .is_ok()
}

#[cfg(test)]
#[path = "signing_tests.rs"]
mod tests;
