//! Signed report-view links: each recipient of a digest gets a link of their own, and the gateway
//! records a view only for a link it signed (`GET /digests/view/{token}`, docs/digests.md).
//!
//! The token is the exact bytes the gateway acts on — the digest id (16 bytes), the contact id
//! (16) and the expiry — signed with `digest.view_secret` ([`crate::signed_link`]: the signature
//! is checked before anything in the token is believed, and the link holds no digits). A link
//! cannot be altered to name another digest, another contact or a later expiry.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::signed_link;
pub use crate::signed_link::LinkError;

/// What a digest's own rendering (the one the owner approves) says where each recipient's link
/// goes; `comms.digest_wording` in SQL (migration 0017) puts a send's link back to it.
pub const PLACEHOLDER: &str = "[personal report link]";

/// The path of the view endpoint on the gateway; a link is `<gateway.public_url>{PATH}<token>`.
pub const PATH: &str = "/digests/view/";

const FIELDS: usize = 16 + 16;

/// What a genuine link names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewLink {
    pub digest_id: Uuid,
    pub contact_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// The token of `link`.
pub fn sign(secret: &[u8], link: &ViewLink) -> String {
    let mut fields = Vec::with_capacity(FIELDS);
    fields.extend_from_slice(link.digest_id.as_bytes());
    fields.extend_from_slice(link.contact_id.as_bytes());
    signed_link::sign(secret, &fields, link.expires_at)
}

/// The full link for `link`: `<base>/digests/view/<token>` (`base` without a trailing slash).
pub fn url(base: &str, secret: &[u8], link: &ViewLink) -> String {
    format!("{}{PATH}{}", base.trim_end_matches('/'), sign(secret, link))
}

/// What a genuine, unexpired token names at `now` ([`signed_link::verify`]).
pub fn verify(secret: &[u8], token: &str, now: DateTime<Utc>) -> Result<ViewLink, LinkError> {
    let (fields, expires_at) = signed_link::verify(secret, token, FIELDS, now)?;
    let id = |range: std::ops::Range<usize>| {
        Uuid::from_slice(&fields[range]).map_err(|_| LinkError::Forged)
    };
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
