//! Privacy over time (docs/privacy.md): erasing a person, expiring personal content, and recording
//! who read full addresses.
//!
//! The rule everything here rests on: personal data (addresses, names, bodies) lives only in the
//! tables erasure and retention can change — contacts, messages' content columns, internal raw
//! material — and never in the append-only logs. The event log holds ids, states, reasons and
//! times; reasons that come from a provider pass through [`redact`] before they are written, so
//! an address a provider echoes back ("550 <dana@example.com> unknown") never reaches an event.

pub mod access;
pub mod erase;
pub mod retention;

use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use regex::Regex;
use sha2::Sha256;

/// What an address is replaced with, by erasure or retention, where a row must keep a value.
pub const REMOVED: &str = "removed";

/// The keyed hash (HMAC-SHA-256, hex) kept for an erased address that had opted out. The address
/// is normalised like the fleet stores it (trimmed; an email lower-cased), and the channel is part
/// of the input, so one address on two channels gives two unrelated hashes.
pub fn address_hash(key: &[u8], channel: &str, address: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(channel.as_bytes());
    mac.update(b"\0");
    mac.update(normalise(address).as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An address as it is compared: trimmed, and lower-cased when it is an email.
pub fn normalise(address: &str) -> String {
    let trimmed = address.trim();
    if trimmed.contains('@') {
        trimmed.to_lowercase()
    } else {
        trimmed.to_string()
    }
}

/// Masks an address: enough to recognise it, not enough to use it. Every listing shows addresses
/// this way; the full value needs an explicit, recorded reveal ([`access`]).
pub fn mask_address(address: &str) -> String {
    if let Some((local, domain)) = address.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    if address.starts_with('+') {
        let chars: Vec<char> = address.chars().collect();
        let keep_end = chars.len().saturating_sub(2);
        return chars
            .iter()
            .enumerate()
            .map(|(i, c)| if i < 2 || i >= keep_end { *c } else { '•' })
            .collect();
    }
    // A portal recipient recorded as `contact:<id>` names no address at all; an erased one is
    // shown as removed.
    address.split(':').next().unwrap_or("").to_string()
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
        .unwrap_or_else(|e| unreachable!("a fixed pattern compiles: {e}"))
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\+[0-9]{7,15}").unwrap_or_else(|e| unreachable!("a fixed pattern compiles: {e}"))
});

/// `text` (a provider's reason, an error) with every email address and E.164 number replaced by
/// `[address]`, so it can go into the event log, which erasure never changes.
pub fn redact(text: &str) -> String {
    let text = EMAIL.replace_all(text, "[address]");
    PHONE.replace_all(&text, "[address]").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked() {
        assert_eq!(mask_address("+14155552671"), "+1••••••••71");
        assert_eq!(mask_address("dana@acme.example"), "d***@acme.example");
        assert_eq!(
            mask_address("contact:123e4567-e89b-12d3-a456-426614174000"),
            "contact"
        );
        assert_eq!(mask_address(REMOVED), REMOVED);
    }

    #[test]
    fn provider_reasons_lose_their_addresses_and_keep_their_codes() {
        assert_eq!(
            redact("sendgrid bounce: 550 5.1.1 <Dana.X@acme.example>: Recipient address rejected"),
            "sendgrid bounce: 550 5.1.1 <[address]>: Recipient address rejected"
        );
        assert_eq!(
            redact("twilio 400: The 'To' number +14155552671 is not valid (error 21211)"),
            "twilio 400: The 'To' number [address] is not valid (error 21211)"
        );
    }

    #[test]
    fn the_hash_is_keyed_and_per_channel() {
        let a = address_hash(b"key-one-0123456789", "email", " Dana@Acme.example ");
        assert_eq!(
            a,
            address_hash(b"key-one-0123456789", "email", "dana@acme.example")
        );
        assert_ne!(
            a,
            address_hash(b"key-two-0123456789", "email", "dana@acme.example")
        );
        assert_ne!(
            a,
            address_hash(b"key-one-0123456789", "sms", "dana@acme.example")
        );
        assert_eq!(a.len(), 64);
    }
}
