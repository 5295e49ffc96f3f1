//! Signed one-click unsubscribe tokens (RFC 8058): the sender puts one in `List-Unsubscribe` of
//! outreach and review-request email, the gateway verifies it before opting the contact out. The
//! HMAC means a token cannot be forged for another contact or channel.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Who a token unsubscribes, from which channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub contact_id: Uuid,
    pub channel: String,
}

fn mac(secret: &[u8], payload: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(payload.as_bytes());
    mac
}

/// `<contact>.<channel>.<signature>`, URL-safe.
pub fn sign(secret: &[u8], who: &Unsubscribe) -> String {
    let payload = format!("{}.{}", who.contact_id.simple(), who.channel);
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, &payload).finalize().into_bytes());
    format!("{payload}.{signature}")
}

/// The contact and channel of a genuine token; `None` for anything forged or malformed.
pub fn verify(secret: &[u8], token: &str) -> Option<Unsubscribe> {
    let mut parts = token.splitn(3, '.');
    let (contact, channel, signature) = (parts.next()?, parts.next()?, parts.next()?);
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    mac(secret, &format!("{contact}.{channel}"))
        .verify_slice(&signature)
        .ok()?;
    Some(Unsubscribe {
        contact_id: contact.parse().ok()?,
        channel: channel.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_cannot_be_forged_for_another_contact() {
        let who = Unsubscribe {
            contact_id: Uuid::new_v4(),
            channel: "email".into(),
        };
        let token = sign(b"secret", &who);
        assert_eq!(verify(b"secret", &token), Some(who.clone()));
        assert_eq!(verify(b"other secret", &token), None);
        let other = Uuid::new_v4().simple().to_string();
        let forged = format!("{other}{}", &token[32..]);
        assert_eq!(verify(b"secret", &forged), None);
        assert_eq!(verify(b"secret", "garbage"), None);
    }
}
