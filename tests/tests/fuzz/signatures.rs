//! Webhook signatures over exactly the bytes the workers act on. For any URL, fields and body,
//! a request signed the way the provider signs it verifies, and changing any one field, the URL,
//! the timestamp, the body or the signature makes it fail; garbage signatures never panic.
//! The signatures here are computed independently of the gateway's code (Twilio: HMAC-SHA1 over
//! the URL and the sorted fields; SendGrid: ECDSA P-256 over timestamp ‖ body).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use comms_domain::webhook_body::{Fields, Format};
use comms_gateway::verify::{sendgrid, twilio};
use hmac::{Hmac, Mac};
use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use proptest::prelude::*;

const TOKEN: &[u8] = b"fuzz-auth-token-0123456789abcdef";

/// Twilio's algorithm, written out: URL, then every `name` + `value` sorted by name and value.
fn twilio_signature(url: &str, fields: &[(String, String)]) -> String {
    let mut sorted = fields.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TOKEN).expect("key");
    mac.update(url.as_bytes());
    for (name, value) in &sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

fn form(fields: &[(String, String)]) -> (Fields, Vec<u8>) {
    let raw = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
        .into_bytes();
    let fields = Fields {
        format: Format::Form,
        fields: fields.to_vec(),
    };
    (fields, raw)
}

fn url() -> impl Strategy<Value = String> {
    (
        "[a-z]{1,12}",
        "[a-z0-9/]{0,20}",
        proptest::option::of("[a-z]{1,5}=[a-z0-9]{0,8}"),
    )
        .prop_map(|(host, path, query)| match query {
            Some(q) => format!("https://{host}.example.com/{path}?{q}"),
            None => format!("https://{host}.example.com/{path}"),
        })
}

/// Fields with distinct names, values of any text.
fn fields() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map("[A-Za-z]{1,12}", ".{0,30}", 1..8)
        .prop_map(|m| m.into_iter().collect())
}

fn signing_key() -> SigningKey {
    SigningKey::from_slice(&[7u8; 32]).expect("a valid P-256 scalar")
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn a_twilio_signature_covers_the_url_and_every_field(
        url in url(),
        fields in fields(),
        which in any::<proptest::sample::Index>(),
        part in 0..3u8,
    ) {
        let signature = twilio_signature(&url, &fields);
        let (read, raw) = form(&fields);
        prop_assert_eq!(twilio::verify(TOKEN, &url, &read, &raw, &signature), Ok(()));

        let mut changed_url = url.clone();
        let mut changed = fields.clone();
        let at = which.index(changed.len());
        match part {
            0 => changed[at].1.push('x'),
            1 => changed[at].0.push('Z'),
            _ => changed_url.push_str(if url.contains('?') { "&x=1" } else { "?x=1" }),
        }
        let (read, raw) = form(&changed);
        prop_assert!(twilio::verify(TOKEN, &changed_url, &read, &raw, &signature).is_err());
    }

    #[test]
    fn a_garbage_twilio_signature_is_refused(url in url(), fields in fields(), signature in ".{0,64}") {
        let (read, raw) = form(&fields);
        prop_assert!(twilio::verify(TOKEN, &url, &read, &raw, &signature).is_err());
    }

    #[test]
    fn a_sendgrid_signature_covers_the_timestamp_and_every_byte(
        timestamp in "[0-9]{10}",
        body in proptest::collection::vec(any::<u8>(), 0..512),
        flip in any::<proptest::sample::Index>(),
    ) {
        let key = signing_key();
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(&body);
        let signature: Signature = key.sign(&signed);
        let encoded = STANDARD.encode(signature.to_der().as_bytes());
        let verifying = *key.verifying_key();
        prop_assert!(sendgrid::verify(&verifying, &timestamp, &body, &encoded));

        let mut altered = body.clone();
        if altered.is_empty() {
            altered.push(b' ');
        } else {
            let at = flip.index(altered.len());
            altered[at] ^= 0x01;
        }
        prop_assert!(!sendgrid::verify(&verifying, &timestamp, &altered, &encoded));
        let later = format!("{}", timestamp.parse::<u64>().expect("digits") + 1);
        prop_assert!(!sendgrid::verify(&verifying, &later, &body, &encoded));
    }

    #[test]
    fn a_garbage_sendgrid_signature_or_key_is_refused(
        signature in ".{0,120}",
        der in proptest::collection::vec(any::<u8>(), 0..100),
        key_text in ".{0,200}",
    ) {
        let verifying = *signing_key().verifying_key();
        prop_assert!(!sendgrid::verify(&verifying, "1764493200", b"[]", &signature));
        prop_assert!(!sendgrid::verify(&verifying, "1764493200", b"[]", &STANDARD.encode(&der)));
        // A configured key that is not a key is an error naming the setting, never a panic.
        if let Err(error) = sendgrid::parse_public_key(&key_text) {
            prop_assert!(error.to_string().contains("webhook_public_key"));
        }
    }
}
