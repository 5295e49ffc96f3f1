//! Signed link tokens: the bytes a gateway endpoint acts on, followed by their HMAC-SHA256, written
//! so they can sit in a message a client reads.
//!
//! Report-view links ([`crate::digests::link`]) and tracked review links
//! ([`crate::outcomes::review_link`]) are both built here, so both check a link the same way: the
//! signature is verified (in constant time) before any byte of the payload is believed, nothing
//! outside the signed bytes is read, and the expiry — the payload's last 8 bytes, Unix seconds,
//! big-endian — is checked only after the signature. A link cannot be altered to name another
//! record or a later expiry.
//!
//! The bytes are written as hex with the letters `a`–`p` for the digits 0–15: a link holds no
//! digits, so the portal-safe check can never mistake a part of it for a phone, card or account
//! number.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SIGNATURE: usize = 32;
const EXPIRY: usize = 8;

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a link we signed: malformed, altered or signed with another secret.
    #[error("the link is not valid")]
    Forged,
    /// Signed by us, but its expiry has passed.
    #[error("the link expired")]
    Expired,
}

fn mac(secret: &[u8], payload: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(payload);
    mac
}

fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0f])
        .map(|n| char::from(b'a' + n))
        .collect()
}

fn decode(text: &str) -> Option<Vec<u8>> {
    let nibble = |c: u8| (b'a'..=b'p').contains(&c).then(|| c - b'a');
    let raw = text.as_bytes();
    if !raw.len().is_multiple_of(2) {
        return None;
    }
    raw.chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// The token of `fields` (what the endpoint acts on) valid until `expires_at`.
pub fn sign(secret: &[u8], fields: &[u8], expires_at: DateTime<Utc>) -> String {
    let mut bytes = Vec::with_capacity(fields.len() + EXPIRY + SIGNATURE);
    bytes.extend_from_slice(fields);
    bytes.extend_from_slice(&expires_at.timestamp().to_be_bytes());
    let signature = mac(secret, &bytes).finalize().into_bytes();
    bytes.extend_from_slice(&signature);
    encode(&bytes)
}

/// The signed fields (exactly `fields_len` bytes) and the expiry of a genuine, unexpired token at
/// `now`.
pub fn verify(
    secret: &[u8],
    token: &str,
    fields_len: usize,
    now: DateTime<Utc>,
) -> Result<(Vec<u8>, DateTime<Utc>), LinkError> {
    let bytes = decode(token).ok_or(LinkError::Forged)?;
    if bytes.len() != fields_len + EXPIRY + SIGNATURE {
        return Err(LinkError::Forged);
    }
    let (payload, signature) = bytes.split_at(fields_len + EXPIRY);
    mac(secret, payload)
        .verify_slice(signature)
        .map_err(|_| LinkError::Forged)?;
    let (fields, expiry) = payload.split_at(fields_len);
    let mut seconds = [0u8; EXPIRY];
    seconds.copy_from_slice(expiry);
    let expires_at =
        DateTime::from_timestamp(i64::from_be_bytes(seconds), 0).ok_or(LinkError::Forged)?;
    if expires_at <= now {
        return Err(LinkError::Expired);
    }
    Ok((fields.to_vec(), expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("a time")
    }

    #[test]
    fn a_token_round_trips_holds_no_digits_and_refuses_any_change() {
        let token = sign(b"secret", b"fields", at(1_900_000_000));
        assert_eq!(
            verify(b"secret", &token, 6, at(1_800_000_000)),
            Ok((b"fields".to_vec(), at(1_900_000_000)))
        );
        assert!(token.bytes().all(|c| (b'a'..=b'p').contains(&c)), "{token}");
        assert_eq!(
            verify(b"other", &token, 6, at(1_800_000_000)),
            Err(LinkError::Forged)
        );
        assert_eq!(
            verify(b"secret", &token, 5, at(1_800_000_000)),
            Err(LinkError::Forged)
        );
        assert_eq!(
            verify(b"secret", &token, 6, at(1_900_000_000)),
            Err(LinkError::Expired)
        );
        for garbage in ["", "abc", "zz", &token[2..]] {
            assert_eq!(verify(b"secret", garbage, 6, at(0)), Err(LinkError::Forged));
        }
    }
}
