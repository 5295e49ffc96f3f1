//! `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + sorted parameters)).
//!
//! This is the gateway's own implementation (not the sandbox's), written from the algorithm the
//! official SDKs implement and tested against their published vectors (`tests.rs`):
//!
//! - the signed URL is the full public URL Twilio requested, query included;
//! - form parameters are sorted by name, each name's values sorted and de-duplicated, and appended
//!   as `name` + `value` with no separators; *all* received parameters count, because Twilio adds
//!   new ones without notice;
//! - a URL whose query carries `bodySHA256` (JSON webhooks) is signed alone, and the body's
//!   SHA-256 must match that parameter;
//! - like the SDKs, a signature computed over the URL with its port removed, or with the scheme's
//!   default port added, is accepted, and so is one over the query percent-encoded the way a
//!   WHATWG URL parser does (`'` becomes `%27`);
//! - the comparison is constant-time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The header Twilio signs every webhook with.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// True when `signature` is Twilio's signature of a request to `url` carrying `params` (the
/// decoded form fields, in any order) and `body` (the raw bytes, used only for JSON webhooks).
pub fn verify(
    auth_token: &[u8],
    url: &str,
    params: &[(String, String)],
    body: &[u8],
    signature: &str,
) -> bool {
    let Ok(expected) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    let signed_params: &[(String, String)] = match body_sha256_param(url) {
        Some(claimed) => {
            let actual = hex(&Sha256::digest(body));
            if !bool::from(
                actual
                    .as_bytes()
                    .ct_eq(claimed.to_ascii_lowercase().as_bytes()),
            ) {
                return false;
            }
            // A JSON webhook's signature covers the URL only.
            &[]
        }
        None => params,
    };
    let sorted = sorted_pairs(signed_params);
    url_candidates(url).iter().any(|candidate| {
        mac(auth_token, candidate, &sorted).is_some_and(|mac| mac.verify_slice(&expected).is_ok())
    })
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
