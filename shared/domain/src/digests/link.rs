//! Signed report-view links: each recipient of a digest gets a link of their own, and the gateway
//! records a view only for a link it signed (`GET /digests/view/{token}`, docs/digests.md).
//!
//! The token is the exact bytes the gateway acts on — the digest id (16 bytes), the contact id
//! (16) and the expiry (8, Unix seconds, big-endian) — followed by their HMAC-SHA256 with
//! `digest.view_secret` (32). Nothing outside the signed bytes is read, so a link cannot be
//! altered to name another digest, another contact or a later expiry. The bytes are written as
//! hex with the letters `a`–`p` for the digits 0–15: the link holds no digits, so the portal-safe
//! check can never mistake a part of it for a phone, card or account number.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// What a digest's own rendering (the one the owner approves) says where each recipient's link
/// goes; `comms.digest_wording` in SQL (migration 0017) puts a send's link back to it.
pub const PLACEHOLDER: &str = "[personal report link]";

/// The path of the view endpoint on the gateway; a link is `<gateway.public_url>{PATH}<token>`.
pub const PATH: &str = "/digests/view/";

const PAYLOAD: usize = 16 + 16 + 8;
const SIGNATURE: usize = 32;

/// What a genuine link names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewLink {
    pub digest_id: Uuid,
    pub contact_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

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

/// The token of `link`.
pub fn sign(secret: &[u8], link: &ViewLink) -> String {
    let mut bytes = Vec::with_capacity(PAYLOAD + SIGNATURE);
    bytes.extend_from_slice(link.digest_id.as_bytes());
    bytes.extend_from_slice(link.contact_id.as_bytes());
    bytes.extend_from_slice(&link.expires_at.timestamp().to_be_bytes());
    let signature = mac(secret, &bytes).finalize().into_bytes();
    bytes.extend_from_slice(&signature);
    encode(&bytes)
}

/// The full link for `link`: `<base>/digests/view/<token>` (`base` without a trailing slash).
pub fn url(base: &str, secret: &[u8], link: &ViewLink) -> String {
    format!("{}{PATH}{}", base.trim_end_matches('/'), sign(secret, link))
}

/// What a genuine, unexpired token names at `now`. The signature is checked (in constant time)
/// before anything in the token is believed, the expiry only after it.
pub fn verify(secret: &[u8], token: &str, now: DateTime<Utc>) -> Result<ViewLink, LinkError> {
    let bytes = decode(token).ok_or(LinkError::Forged)?;
    if bytes.len() != PAYLOAD + SIGNATURE {
        return Err(LinkError::Forged);
    }
    let (payload, signature) = bytes.split_at(PAYLOAD);
    mac(secret, payload)
        .verify_slice(signature)
        .map_err(|_| LinkError::Forged)?;
    let id = |range: std::ops::Range<usize>| {
        Uuid::from_slice(&payload[range]).map_err(|_| LinkError::Forged)
    };
    let mut expiry = [0u8; 8];
    expiry.copy_from_slice(&payload[32..]);
    let expires_at =
        DateTime::from_timestamp(i64::from_be_bytes(expiry), 0).ok_or(LinkError::Forged)?;
    if expires_at <= now {
        return Err(LinkError::Expired);
    }
    Ok(ViewLink {
        digest_id: id(0..16)?,
        contact_id: id(16..32)?,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> ViewLink {
        ViewLink {
            digest_id: Uuid::new_v4(),
            contact_id: Uuid::new_v4(),
            expires_at: DateTime::from_timestamp(1_900_000_000, 0).expect("a time"),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("a time")
    }

    #[test]
    fn a_link_round_trips_and_holds_no_digits() {
        let link = link();
        let token = sign(b"secret", &link);
        assert_eq!(verify(b"secret", &token, now()), Ok(link));
        assert!(token.bytes().all(|c| (b'a'..=b'p').contains(&c)), "{token}");
        assert_eq!(
            url("https://gw.example/", b"secret", &link),
            format!("https://gw.example/digests/view/{token}")
        );
    }

    #[test]
    fn another_secret_an_altered_byte_or_garbage_is_forged() {
        let token = sign(b"secret", &link());
        assert_eq!(verify(b"other", &token, now()), Err(LinkError::Forged));
        for at in [0, 40, 70, 143] {
            let mut altered = token.clone().into_bytes();
            altered[at] = if altered[at] == b'a' { b'b' } else { b'a' };
            let altered = String::from_utf8(altered).expect("ascii");
            assert_eq!(
                verify(b"secret", &altered, now()),
                Err(LinkError::Forged),
                "{at}"
            );
        }
        let short = token[..token.len() - 2].to_string();
        for garbage in [
            String::new(),
            "abc".into(),
            "zz".into(),
            short,
            format!("{token}aa"),
        ] {
            assert_eq!(verify(b"secret", &garbage, now()), Err(LinkError::Forged));
        }
    }

    #[test]
    fn an_expired_link_is_refused_only_when_genuine() {
        let mut link = link();
        link.expires_at = now();
        let token = sign(b"secret", &link);
        assert_eq!(verify(b"secret", &token, now()), Err(LinkError::Expired));
        assert_eq!(verify(b"other", &token, now()), Err(LinkError::Forged));
    }
}
