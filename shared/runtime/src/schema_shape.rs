//! Reading the shape of JSON documents, for the tests that keep a JSON Schema in docs/ in
//! agreement with the Rust decoder that accepts what it describes (send requests, incident
//! events, lifecycle events, digest jobs): the keys of an object, the strings of a list, the object
//! at a path. Small and dependency-free, so every crate's agreement test reads schemas one way.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// The keys of `value` if it is an object (empty otherwise).
pub fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The strings of `value` if it is a list (other items and other values give none).
pub fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The object at `path` of `value`, to change; `None` when there is none.
pub fn object_at<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    path.iter()
        .try_fold(value, |v, k| v.get_mut(*k))?
        .as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_strings_and_paths() {
        let mut doc = json!({"a": {"b": {"c": 1}}, "l": ["x", 1, "y"]});
        assert_eq!(keys(&doc), ["a", "l"].map(String::from).into());
        assert_eq!(strings(&doc["l"]), ["x", "y"].map(String::from).into());
        assert!(object_at(&mut doc, &["a", "b"]).is_some_and(|o| o.contains_key("c")));
        assert!(object_at(&mut doc, &["a", "zz"]).is_none());
    }
}
