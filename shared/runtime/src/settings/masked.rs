//! Settings as an operator may see them: every secret replaced by [`MASK`].
//!
//! `--check-config` prints the settings a process would run with, so a wrong value can be found
//! before anything starts. Secrets are `SecretString`s, which have no `Serialize` on purpose: each
//! one names how it is shown here (`serialize_with`), so a new secret cannot be printed by
//! accident. A URL keeps its scheme, host and path (what a mistake is usually in) and loses its
//! password and any credential-like query parameter; any other string that is a URL with a
//! password (a collector endpoint, a callback URL) is masked the same way.

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;
use serde_json::Value;

use super::Settings;

/// What a masked secret reads as.
pub const MASK: &str = "********";

/// Query parameters whose values are credentials (`?password=…`, `?sslpassword=…`, `?token=…`).
const CREDENTIAL_PARAMS: [&str; 4] = ["pass", "secret", "token", "key"];

/// A secret that is shown only as [`MASK`].
pub(super) fn secret<S: Serializer>(_: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(MASK)
}

/// An optional secret: `null` when unset, [`MASK`] when set.
pub(super) fn optional_secret<S: Serializer>(
    value: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str(MASK),
        None => serializer.serialize_none(),
    }
}

/// A URL that may carry credentials: shown with them masked, or wholly masked if unparseable.
pub(super) fn url<S: Serializer>(value: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    let shown = mask_url(value.expose_secret()).unwrap_or_else(|| MASK.to_string());
    serializer.serialize_str(&shown)
}

/// `raw` with its password and credential-like query values replaced by [`MASK`]; `None` when
/// `raw` is not an absolute URL.
pub fn mask_url(raw: &str) -> Option<String> {
    let mut url = reqwest::Url::parse(raw).ok()?;
    if url.password().is_some() {
        url.set_password(Some(MASK)).ok()?;
    }
    let credential = |key: &str| {
        let key = key.to_ascii_lowercase();
        CREDENTIAL_PARAMS.iter().any(|word| key.contains(word))
    };
    if url.query_pairs().any(|(key, _)| credential(&key)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if credential(&key) {
                    MASK.to_string()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Some(url.to_string())
}

impl Settings {
    /// Every setting as `(dotted.key, JSON value)`, sorted by key, secrets masked.
    pub fn masked(&self) -> Vec<(String, Value)> {
        let tree = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut lines = Vec::new();
        flatten(String::new(), tree, &mut lines);
        lines
    }
}

fn flatten(prefix: String, value: Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                let key = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(key, value, out);
            }
        }
        Value::String(text) => {
            // Only a URL that had something to mask is shown rewritten.
            let shown = mask_url(&text)
                .filter(|masked| masked.contains(MASK))
                .unwrap_or(text);
            out.push((prefix, Value::String(shown)));
        }
        other => out.push((prefix, other)),
    }
}
