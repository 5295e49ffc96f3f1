//! Turning untrusted bytes into a [`ValidSendRequest`], or into every reason they are not one.
//!
//! This is the only door into the fleet for a send request, used by the HTTP API and by the
//! consumer of `comms.send` alike, so both refuse exactly the same inputs with exactly the same
//! field/problem texts (listed in `docs/contract.md`). The stages are: size, JSON syntax, the
//! schema marker, the serde shape (stops at the first shape error: unknown or missing key, wrong
//! type, unknown enum value, duplicate key), then the value checks, which report every problem.

use serde_json::Value;
use serde_path_to_error::Segment;

use super::checks::{Checker, MAX_TEXT_CHARS};
use super::error::{
    FieldError, REASON_INVALID_JSON, REASON_INVALID_REQUEST, REASON_PAYLOAD_TOO_LARGE,
    RequestErrors,
};
use super::valid::{Consent, RecordRef, ValidSendRequest};
use super::wire::SendRequest;
use super::{MAX_PAYLOAD_BYTES, SEND_REQUEST_V1};

/// Parse and validate a raw send request (v1).
pub fn parse_send_request(raw: &[u8]) -> Result<ValidSendRequest, RequestErrors> {
    if raw.len() > MAX_PAYLOAD_BYTES {
        let problem = format!("payload is {} bytes, limit {MAX_PAYLOAD_BYTES}", raw.len());
        return Err(RequestErrors::one(REASON_PAYLOAD_TOO_LARGE, "$", problem));
    }
    let value: Value = serde_json::from_slice(raw).map_err(|e| {
        RequestErrors::one(REASON_INVALID_JSON, "$", format!("not valid JSON: {e}"))
    })?;
    let Value::Object(map) = &value else {
        let problem = format!("must be a JSON object, got {}", json_type(&value));
        return Err(RequestErrors::one(REASON_INVALID_REQUEST, "$", problem));
    };
    // A request for another version would otherwise drown in unknown-field noise.
    if let Some(marker) = map.get("schema")
        && marker.as_str() != Some(SEND_REQUEST_V1)
    {
        let problem = schema_problem(&marker.to_string());
        return Err(RequestErrors::one(
            REASON_INVALID_REQUEST,
            "schema",
            problem,
        ));
    }
    // Decode from the bytes, not the `Value`, so that duplicate keys are refused.
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let wire: SendRequest =
        serde_path_to_error::deserialize(&mut deserializer).map_err(shape_error)?;
    validate(wire)
}

/// Check the values of an already decoded request, reporting every problem.
pub fn validate(req: SendRequest) -> Result<ValidSendRequest, RequestErrors> {
    let mut c = Checker::default();
    if let Some(marker) = &req.schema
        && marker != SEND_REQUEST_V1
    {
        c.fail(
            "schema",
            schema_problem(&Value::from(marker.as_str()).to_string()),
        );
    }
    let key_chars = req.idempotency_key.chars().count();
    if !(1..=MAX_TEXT_CHARS).contains(&key_chars) {
        let problem = format!("must be 1–{MAX_TEXT_CHARS} characters, got {key_chars}");
        c.fail("idempotency_key", problem);
    } else if req.idempotency_key.trim().is_empty() {
        c.fail("idempotency_key", "must not be blank");
    }
    let recipient = c.recipient(&req.recipient, req.channel);
    let template = c.template(req.template.name, req.template.version, req.template.vars);
    let record_id = c.uuid("record.id", &req.record.id);
    let owner = c.text("owner", &req.owner);
    let source = c.text("source", &req.source);
    let trigger = c.text("trigger", &req.trigger);
    let consent = req.consent.map(|consent| {
        let source = c.text("consent.source", &consent.source);
        let captured_at = c.instant("consent.captured_at", &consent.captured_at);
        (consent.basis, source, captured_at)
    });
    let send_after = req.send_after.map(|at| c.instant("send_after", &at));

    let invalid = |errors| RequestErrors::new(REASON_INVALID_REQUEST, errors);
    if !c.errors.is_empty() {
        return Err(invalid(c.errors));
    }
    // Every `None` below was recorded as an error above, so this `else` cannot run.
    let (Some(recipient), Some(template), Some(id)) = (recipient, template, record_id) else {
        return Err(invalid(c.errors));
    };
    let consent = match consent {
        Some((basis, source, Some(captured_at))) => Some(Consent {
            basis,
            source,
            captured_at,
        }),
        Some((_, _, None)) => return Err(invalid(c.errors)),
        None => None,
    };
    let send_after = match send_after {
        Some(Some(at)) => Some(at),
        Some(None) => return Err(invalid(c.errors)),
        None => None,
    };
    Ok(ValidSendRequest {
        idempotency_key: req.idempotency_key,
        channel: req.channel,
        kind: req.kind,
        recipient,
        template,
        record: RecordRef {
            record_type: req.record.record_type,
            id,
        },
        owner,
        source,
        trigger,
        consent,
        send_after,
        contains_roi: req.contains_roi,
        ai_draft: req.ai_draft,
    })
}

impl TryFrom<SendRequest> for ValidSendRequest {
    type Error = RequestErrors;

    fn try_from(req: SendRequest) -> Result<Self, Self::Error> {
        validate(req)
    }
}

fn schema_problem(got: &str) -> String {
    format!("unsupported schema {got}; expected `{SEND_REQUEST_V1}` or no `schema` key")
}

pub(super) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Map serde's first shape error to a field path and a problem.
fn shape_error(err: serde_path_to_error::Error<serde_json::Error>) -> RequestErrors {
    let mut path: Vec<String> = err
        .path()
        .iter()
        .map(|segment| match segment {
            Segment::Map { key } => key.clone(),
            Segment::Seq { index } => format!("[{index}]"),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => "?".to_owned(),
        })
        .collect();
    let message = err.into_inner().to_string();
    // serde_json appends the position; the field path says more.
    let message = match message.rsplit_once(" at line ") {
        Some((head, _)) => head.to_owned(),
        None => message,
    };
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let mut problem = message.clone();
    for (prefix, short) in [
        ("unknown field `", None),
        ("missing field `", Some("is required")),
        ("duplicate field `", None),
    ] {
        if let Some(name) = named(prefix) {
            if path.last() != Some(&name) {
                path.push(name.clone());
            }
            problem = short.map_or_else(|| format!("{prefix}{name}`"), str::to_owned);
            break;
        }
    }
    let field = if path.is_empty() {
        "$".to_owned()
    } else {
        path.join(".").replace(".[", "[")
    };
    RequestErrors::new(
        REASON_INVALID_REQUEST,
        vec![FieldError::new(field, problem)],
    )
}
