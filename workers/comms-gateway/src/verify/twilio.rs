//! `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + sorted parameters)).
//!
//! This is the gateway's own implementation (not the sandbox's), written from the algorithm the
//! official SDKs implement and tested against their published vectors (`tests.rs`):
//!
//! - the signed URL is the full public URL Twilio requested, query included;
//! - form parameters are sorted by name, each name's values sorted and de-duplicated, and appended
//!   as `name` + `value` with no separators; *all* received parameters count, because Twilio adds
//!   new ones without notice;
//! - a JSON body is signed over the URL alone, which must carry `bodySHA256`, and the body's
//!   SHA-256 must match that parameter; JSON without it is refused, because the signature would
//!   then cover nothing the workers read (`comms_domain::webhook_body` decides how a body is
//!   read, for the gateway and the workers alike);
//! - like the SDKs, a signature computed over the URL with its port removed, or with the scheme's
//!   default port added, is accepted, and so is one over the query percent-encoded the way a
//!   WHATWG URL parser does (`'` becomes `%27`);
//! - the comparison is constant-time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use comms_domain::webhook_body::{Fields, Format};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The header Twilio signs every webhook with.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Why a request is not provably from Twilio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The signature does not match the URL and the body's fields.
    #[error("X-Twilio-Signature does not match this request")]
    InvalidSignature,
    /// A JSON body whose URL carries no `bodySHA256`: the signature would cover the URL alone,
    /// and nothing the workers read.
    #[error("a JSON body must be signed through bodySHA256 in the URL")]
    BodyNotSigned,
    /// `bodySHA256` does not match the body received.
    #[error("bodySHA256 does not match the body")]
    BodyHashMismatch,
}

impl Refusal {
    /// The stable reason code of the 403.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::InvalidSignature => "invalid_signature",
            Refusal::BodyNotSigned => "body_not_signed",
            Refusal::BodyHashMismatch => "body_hash_mismatch",
        }
    }
}

/// Checks that `signature` is Twilio's signature of a request to `url` whose body `raw` was read
/// as `body` (by `comms_domain::webhook_body`, as the workers will read it):
///
/// - a form: the URL followed by the sorted fields;
/// - JSON: the URL alone, which must carry `bodySHA256`, equal to the SHA-256 of `raw`.
///
/// A form whose URL carries `bodySHA256` must match it too, so the body stays bound either way.
pub fn verify(
    auth_token: &[u8],
    url: &str,
    body: &Fields,
    raw: &[u8],
    signature: &str,
) -> Result<(), Refusal> {
    let claimed = body_sha256_param(url);
    if body.format == Format::Json && claimed.is_none() {
        return Err(Refusal::BodyNotSigned);
    }
    if let Some(claimed) = claimed {
        let actual = hex(&Sha256::digest(raw));
        let matches = actual
            .as_bytes()
            .ct_eq(claimed.to_ascii_lowercase().as_bytes());
        if !bool::from(matches) {
            return Err(Refusal::BodyHashMismatch);
        }
    }
    let Ok(expected) = STANDARD.decode(signature.trim()) else {
        return Err(Refusal::InvalidSignature);
    };
    // A JSON webhook's signature covers the URL only; its body is bound through bodySHA256.
    let signed: &[(String, String)] = match body.format {
        Format::Form => &body.fields,
        Format::Json => &[],
        // Twilio never sends multipart; no signature could cover it.
        Format::Multipart => return Err(Refusal::BodyNotSigned),
    };
    let sorted = sorted_pairs(signed);
    let valid = url_candidates(url).iter().any(|candidate| {
        mac(auth_token, candidate, &sorted).is_some_and(|mac| mac.verify_slice(&expected).is_ok())
    });
    if valid {
        Ok(())
    } else {
        Err(Refusal::InvalidSignature)
    }
}

/// The signature Twilio would send; used by tests and by tools that replay callbacks.
pub fn sign(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    let sorted = sorted_pairs(params);
    mac(auth_token, url, &sorted)
        .map(|mac| STANDARD.encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

fn sorted_pairs(params: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Sorting (name, value) pairs sorts names, then each name's values; dedup removes repeats.
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

fn mac(auth_token: &[u8], url: &str, sorted: &[(&str, &str)]) -> Option<Hmac<Sha1>> {
    // HMAC takes keys of any length, so this is always `Some`; staying total keeps a request path
    // free of panics.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token).ok()?;
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Some(mac)
}

fn body_sha256_param(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "bodySHA256")
        .map(|(_, value)| value.into_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The URL forms a valid signature may have been computed over, the given one first.
fn url_candidates(url: &str) -> Vec<String> {
    let mut forms = vec![url.to_string()];
    if let Some(other) = toggled_port(url) {
        forms.push(other);
    }
    let encoded: Vec<String> = forms
        .iter()
        .filter_map(|form| {
            let normalised = whatwg_query(form);
            (normalised != *form).then_some(normalised)
        })
        .collect();
    forms.extend(encoded);
    forms
}

/// The URL with its explicit port removed, or with the scheme's default port added.
fn toggled_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((user, hostport)) => (format!("{user}@"), hostport),
        None => (String::new(), authority),
    };
    let host_end = if hostport.starts_with('[') {
        hostport.find(']').map_or(hostport.len(), |i| i + 1)
    } else {
        hostport.find(':').unwrap_or(hostport.len())
    };
    let (host, port) = hostport.split_at(host_end);
    if let Some(port) = port.strip_prefix(':') {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return Some(format!("{scheme}://{userinfo}{host}{tail}"));
    }
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    Some(format!("{scheme}://{userinfo}{host}:{default}{tail}"))
}

/// The URL with its query percent-encoded as a WHATWG parser does for special schemes
/// (controls, space, `"`, `'`, `<`, `>` and non-ASCII bytes).
fn whatwg_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut out = String::with_capacity(url.len() + 8);
    out.push_str(base);
    out.push('?');
    for byte in query.bytes() {
        if byte <= 0x20 || byte >= 0x7f || matches!(byte, b'"' | b'\'' | b'<' | b'>') {
            out.push_str(&format!("%{byte:02X}"));
        } else {
            out.push(char::from(byte));
        }
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}
