//! The canonical bytes of a valid send request, checked as the sender will check them.
//!
//! Whoever publishes a validated request publishes its canonical form (schema marker set, phone
//! numbers normalised, timestamps in UTC, defaults written out), and the sender validates those
//! bytes again on receipt. Normalisation can make a request longer, so a request within the limits
//! as sent can be over them as published, and the sender would then reject what the caller was
//! told was accepted. [`canonical_bytes`] applies the sender's own validation to the exact bytes
//! to publish, so the publisher refuses such a request while the caller is still there to hear it.

use super::error::{REASON_INVALID_REQUEST, REASON_PAYLOAD_TOO_LARGE, RequestErrors};
use super::{MAX_PAYLOAD_BYTES, ValidSendRequest, parse_send_request};

/// The bytes to publish for `request`, or why the sender would refuse them.
pub fn canonical_bytes(request: &ValidSendRequest) -> Result<Vec<u8>, RequestErrors> {
    let bytes = serde_json::to_vec(request).map_err(|e| {
        let problem = format!("the request cannot be encoded: {e}");
        RequestErrors::one(REASON_INVALID_REQUEST, "$", problem)
    })?;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        let problem = format!(
            "the normalised request to publish is {} bytes, limit {MAX_PAYLOAD_BYTES} \
             (normalising adds the schema marker and defaults, and rewrites phone numbers and \
             times; send less)",
            bytes.len()
        );
        return Err(RequestErrors::one(REASON_PAYLOAD_TOO_LARGE, "$", problem));
    }
    // Exactly what the sender runs on receipt.
    parse_send_request(&bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(pad: usize) -> serde_json::Value {
        json!({
            "idempotency_key": "k-1",
            "channel": "sms",
            "kind": "transactional",
            "recipient": { "phone": "+1 (415) 555-2671" },
            "template": { "name": "welcome", "vars": { "pad": "x".repeat(pad) } },
            "record": { "type": "client", "id": "00000000-0000-4000-8000-000000000001" },
            "owner": "ana",
            "source": "crm",
            "trigger": "test"
        })
    }

    fn canonical_len(pad: usize) -> Result<usize, RequestErrors> {
        let raw = serde_json::to_vec(&request(pad)).expect("json");
        let valid = parse_send_request(&raw)?;
        canonical_bytes(&valid).map(|bytes| bytes.len())
    }

    #[test]
    fn the_limit_applies_to_the_normalised_copy_to_the_byte() {
        let base = canonical_len(0).expect("small request");
        let at_limit = MAX_PAYLOAD_BYTES - base;
        assert_eq!(
            canonical_len(at_limit).expect("at the limit"),
            MAX_PAYLOAD_BYTES
        );
        let over = canonical_len(at_limit + 1).expect_err("one byte over");
        assert_eq!(over.reason_code(), REASON_PAYLOAD_TOO_LARGE);
        // The request as sent is shorter than its normalised copy, so it passed on its own.
        let sent = serde_json::to_vec(&request(at_limit + 1)).expect("json");
        assert!(sent.len() < MAX_PAYLOAD_BYTES);
    }
}
