//! Turning untrusted bytes into a [`ValidSendRequest`], or into every reason they are not one.
//!
//! This is the only door into the fleet for a send request, used by the HTTP API and by the
//! consumer of `comms.send` alike, so both refuse exactly the same inputs with exactly the same
//! field/problem texts (listed in `docs/contract.md`). The stages are: size, JSON syntax, the
//! schema marker, characters PostgreSQL cannot store, the serde shape (stops at the first shape
//! error: unknown or missing key, wrong type, unknown enum value, duplicate key), then the value
//! checks, which report every problem. No problem text quotes the value it refuses
//! ([`describe`](super::describe)).

use serde_json::Value;

use super::checks::Checker;
use super::describe;
use super::error::{
    REASON_INVALID_JSON, REASON_INVALID_REQUEST, REASON_PAYLOAD_TOO_LARGE, RequestErrors,
};
use super::valid::{Consent, RecordRef, ValidSendRequest};
use super::wire::SendRequest;
use super::{MAX_PAYLOAD_BYTES, SEND_REQUEST_V1};

/// Parse and validate a raw send request (v1).
pub fn parse_send_request(raw: &[u8]) -> Result<ValidSendRequest, RequestErrors> {
    if raw.len() > MAX_PAYLOAD_BYTES {
        let problem = format!(
            "expected at most {MAX_PAYLOAD_BYTES} bytes; found {} bytes",
            raw.len()
        );
        return Err(RequestErrors::one(REASON_PAYLOAD_TOO_LARGE, "$", problem));
    }
    let value: Value = serde_json::from_slice(raw).map_err(|e| {
        // serde_json's syntax errors name the problem and its place, never the text.
        let problem =
            format!("expected a JSON object (the send request); found text that is not JSON ({e})");
        RequestErrors::one(REASON_INVALID_JSON, "$", problem)
    })?;
    let Value::Object(map) = &value else {
        let problem = format!(
            "expected a JSON object (the send request); found {}",
            describe::kind(&value)
        );
        return Err(RequestErrors::one(REASON_INVALID_REQUEST, "$", problem));
    };
    // A request for another version would otherwise drown in unknown-field noise.
    if let Some(marker) = map.get("schema")
        && marker.as_str() != Some(SEND_REQUEST_V1)
    {
        return Err(RequestErrors::one(
            REASON_INVALID_REQUEST,
            "schema",
            schema_problem(marker),
        ));
    }
    // Before anything is stored, logged or echoed: PostgreSQL refuses U+0000 everywhere.
    if let Some(errors) = describe::unstorable(&value) {
        return Err(errors);
    }
    // Decode from the bytes, not the `Value`, so that duplicate keys are refused.
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let wire: SendRequest = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| describe::shape_error(e, &value))?;
    check_values(wire)
}

/// Check the values of an already decoded request, reporting every problem.
pub fn validate(req: SendRequest) -> Result<ValidSendRequest, RequestErrors> {
    let value = serde_json::to_value(&req).unwrap_or_default();
    if let Some(errors) = describe::unstorable(&value) {
        return Err(errors);
    }
    check_values(req)
}

/// The value checks, for a request whose characters were already checked.
fn check_values(req: SendRequest) -> Result<ValidSendRequest, RequestErrors> {
    let mut c = Checker::default();
    if let Some(marker) = &req.schema
        && marker != SEND_REQUEST_V1
    {
        c.fail("schema", schema_problem(&Value::from(marker.as_str())));
    }
    c.text_length("idempotency_key", &req.idempotency_key);
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

fn schema_problem(found: &Value) -> String {
    let found = match found {
        Value::String(_) => "another string",
        other => describe::kind(other),
    };
    format!("expected the string {SEND_REQUEST_V1} or no schema key; found {found}")
}
