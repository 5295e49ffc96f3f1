//! Problem texts a caller can act on and an operator can read without seeing anyone's data.
//!
//! serde's own messages quote the value they refuse (`invalid type: string "+14155552671"`) and
//! name Rust types (`expected struct RecipientInput`, `expected i64`); they end up in a WARN line,
//! in `internal.rejected_input.reason` and in the dead letter's `x-comms-reason`. So the shape
//! stage does not pass them on: it reads only *which* field failed and *how* (unknown, missing,
//! duplicate, wrong), and says, in the words of `docs/contract.md`, what the field expects and
//! what kind of JSON value it found — `channel: expected one of sms, email, portal; found a
//! number` — never the value itself. The same module finds the one character PostgreSQL cannot
//! store (U+0000), anywhere in the request, before anything tries to store it.

use serde_json::Value;
use serde_path_to_error::Segment;

use super::enums::{Channel, ConsentBasis, Kind, RecordType};
use super::error::{
    FieldError, REASON_INVALID_REQUEST, REASON_UNSTORABLE_CHARACTER, RequestErrors,
};
use super::{MAX_TEMPLATE_NAME_CHARS, MAX_TEMPLATE_VERSION, MAX_TEXT_CHARS};

/// The kind of a JSON value, as problem texts say it: `a string`, `a number`, `a boolean`,
/// `an object`, `an array` or `null`.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What the field at `path` expects, in the contract's words.
fn expected(path: &str) -> String {
    fn one_of(names: impl Iterator<Item = &'static str>) -> String {
        format!("one of {}", names.collect::<Vec<_>>().join(", "))
    }
    let text = format!("a string of 1–{MAX_TEXT_CHARS} characters, not blank");
    let timestamp = "an RFC 3339 timestamp string like 2025-05-01T09:00:00Z".to_owned();
    let uuid = "a UUID string like 123e4567-e89b-12d3-a456-426614174000".to_owned();
    match path {
        "$" => "a JSON object (the send request)".to_owned(),
        "schema" => format!("the string {}", super::SEND_REQUEST_V1),
        "idempotency_key" | "owner" | "source" | "trigger" | "recipient.name"
        | "consent.source" => text,
        "channel" => one_of(Channel::ALL.iter().map(|v| v.as_str())),
        "kind" => one_of(Kind::ALL.iter().map(|v| v.as_str())),
        "record.type" => one_of(RecordType::ALL.iter().map(|v| v.as_str())),
        "consent.basis" => one_of(ConsentBasis::ALL.iter().map(|v| v.as_str())),
        "recipient" => "an object with exactly one of contact_id, phone, email".to_owned(),
        "recipient.contact_id" | "record.id" => uuid,
        "recipient.phone" => "an E.164 phone number string (+, country code, number)".to_owned(),
        "recipient.email" => "an email address string".to_owned(),
        "recipient.time_zone" => "an IANA time zone name string like America/New_York".to_owned(),
        "template" => "an object with name, vars and optionally version".to_owned(),
        "template.name" => format!("a string matching [a-z0-9_.-]{{1,{MAX_TEMPLATE_NAME_CHARS}}}"),
        "template.version" => format!("an integer from 1 to {MAX_TEMPLATE_VERSION}"),
        "template.vars" => "a JSON object".to_owned(),
        "record" => "an object with type and id".to_owned(),
        "consent" => "an object with basis, source and captured_at".to_owned(),
        "send_after" | "consent.captured_at" => timestamp,
        "contains_roi" | "ai_draft" => "true or false".to_owned(),
        _ => "a value the send request (v1) defines".to_owned(),
    }
}

/// The value at `path` of `root`, if there is one.
fn value_at<'a>(root: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(root, |value, segment| match segment {
        Segment::Map { key } => value.get(key),
        Segment::Seq { index } => value.get(index),
        _ => None,
    })
}

/// A path as the contract writes it: `$` for the whole request, keys joined by dots, indexes
/// in brackets, and a key that is the empty string as `""` so that no field is ever blank.
fn join(path: &[String]) -> String {
    if path.is_empty() {
        return "$".to_owned();
    }
    let named: Vec<&str> = path
        .iter()
        .map(|key| if key.is_empty() { "\"\"" } else { key.as_str() })
        .collect();
    named.join(".").replace(".[", "[")
}

/// The first shape error serde found, said in the contract's words (see the module docs).
/// `root` is the same request, already parsed as a JSON value.
pub(super) fn shape_error(
    err: serde_path_to_error::Error<serde_json::Error>,
    root: &Value,
) -> RequestErrors {
    let mut segments: Vec<Segment> = err.path().iter().cloned().collect();
    // serde's text is read for *how* the field failed and which keys exist, never passed on.
    let message = err.into_inner().to_string();
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let mut add_key = |name: &str| {
        if !matches!(segments.last(), Some(Segment::Map { key }) if key == name) {
            segments.push(Segment::Map {
                key: name.to_owned(),
            });
        }
    };
    let (unknown, missing, duplicate) = (
        named("unknown field `"),
        named("missing field `"),
        named("duplicate field `"),
    );
    for name in [&unknown, &missing, &duplicate].into_iter().flatten() {
        add_key(name);
    }
    let names: Vec<String> = segments
        .iter()
        .map(|segment| match segment {
            Segment::Map { key } => key.clone(),
            Segment::Seq { index } => format!("[{index}]"),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => "?".to_owned(),
        })
        .collect();
    let field = join(&names);
    let found = value_at(root, &segments).map_or("nothing", kind);
    let problem = if unknown.is_some() {
        let parent = join(&names[..names.len().saturating_sub(1)]);
        let allowed: Vec<&str> = message
            .split_once(", expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let object = if parent == "$" {
            "the request"
        } else {
            parent.as_str()
        };
        format!(
            "expected no such key ({object} takes {}); found {found}",
            allowed.join(", ")
        )
    } else if missing.is_some() {
        format!(
            "expected {}; found nothing (the key is required)",
            expected(&field)
        )
    } else if duplicate.is_some() {
        "expected the key once; found it more than once".to_owned()
    } else if message.starts_with("unknown variant") {
        format!(
            "expected {}; found a string that is none of them",
            expected(&field)
        )
    } else {
        format!("expected {}; found {found}", expected(&field))
    };
    RequestErrors::new(
        REASON_INVALID_REQUEST,
        vec![FieldError::new(field, problem)],
    )
}

/// Every place in `root` where a string or a key holds U+0000 (NUL), which PostgreSQL can store
/// in neither `text` nor `jsonb`. A key is reported at the object that holds it, so the key
/// itself never appears in the path.
pub(super) fn unstorable(root: &Value) -> Option<RequestErrors> {
    fn walk(value: &Value, path: &mut Vec<String>, errors: &mut Vec<FieldError>) {
        match value {
            Value::String(s) if s.contains('\0') => errors.push(FieldError::new(
                join(path),
                "expected text without the character U+0000 (NUL), which cannot be stored; \
                 found a string containing it",
            )),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    errors.push(FieldError::new(
                        join(path),
                        "expected keys without the character U+0000 (NUL), which cannot be \
                         stored; found a key containing it",
                    ));
                }
                for (key, child) in map.iter().filter(|(k, _)| !k.contains('\0')) {
                    path.push(key.clone());
                    walk(child, path, errors);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    path.push(format!("[{index}]"));
                    walk(child, path, errors);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut errors = Vec::new();
    walk(root, &mut Vec::new(), &mut errors);
    (!errors.is_empty()).then(|| RequestErrors::new(REASON_UNSTORABLE_CHARACTER, errors))
}
