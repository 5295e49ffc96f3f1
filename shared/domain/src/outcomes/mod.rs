//! Outcomes (`comms.outcome.v1`): the results account owners are judged on, reported by upstream
//! on `comms.sequence` (routing key `outcome.<type>`) or `POST /v1/outcomes`.
//!
//! - `booked`: a meeting or a sale, optional value and currency, attributed to the message,
//!   sequence (enrolment) or record that led to it. It ends the matching enrolments (`booked`).
//! - `review`: a review request's outcome: `clicked`, `reviewed` (platform, rating) or `declined`.
//!   A `review_request` message's tracked link records `clicked` itself ([`review_link`]).
//!
//! Report views are not outcomes sent here: the signed report-view link records them in
//! `comms.digest_views` (docs/digests.md), and the outcome report counts them from there, so a
//! `report_viewed` outcome is refused with that reason rather than counted twice.
//!
//! Each outcome is idempotent on its `outcome_id`: the same outcome again is a no-op; the same id
//! with other content is refused. Owner, client and channel are resolved once, at recording, so
//! `commsctl report outcomes` groups without guessing. Agreement with
//! `docs/outcome.schema.json`: `outcomes/schema_agreement.rs`.

pub mod figures;
mod record;
pub mod report;
pub mod review_link;
pub mod roi;
#[cfg(test)]
mod schema_agreement;

pub use record::{Recorded, record};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `schema` marker of this version.
pub const OUTCOME_V1: &str = "comms.outcome.v1";

/// An outcome as sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The sender's id for this outcome: sending it again is a no-op.
    pub outcome_id: String,
    /// `booked`, `review` (`report_viewed` is refused: see the module docs).
    #[serde(rename = "type")]
    pub outcome_type: String,
    /// When it happened; absent means when it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    pub source: String,
    /// Whose result it is; absent means the owner of what it is attributed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booked: Option<Booked>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    pub attributed_to: Attribution,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Booked {
    /// `meeting` or `sale`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// ISO 4217, e.g. `USD`; only with a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// `clicked`, `reviewed` or `declined`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<f64>,
}

/// What led to the outcome: at least one of these.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    /// A message id or idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolment: Option<Uuid>,
    /// A sequence name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<crate::sequences::enrol::EnrolmentRecord>,
}

/// Why an outcome was refused; `code()` is the reason code.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    #[error("{code}: {problem}")]
    Refused { code: &'static str, problem: String },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl OutcomeError {
    pub fn refused(code: &'static str, problem: impl Into<String>) -> Self {
        Self::Refused {
            code,
            problem: problem.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused { code, .. } => code,
            Self::Db(_) => "database_unavailable",
        }
    }
}

/// The routing key of an outcome of `outcome_type` on `comms.sequence`.
pub fn routing_key(outcome_type: &str) -> String {
    format!("outcome.{outcome_type}")
}

/// Parses an outcome; the error is the reason it is refused.
pub fn parse(raw: &[u8]) -> Result<OutcomeRequest, OutcomeError> {
    let request: OutcomeRequest = serde_json::from_slice(raw).map_err(|e| {
        let text = e.to_string();
        let text = match text.split_once(": string \"") {
            Some((head, _)) => format!("{head}: a string that is not accepted"),
            None => text,
        };
        OutcomeError::refused("invalid_outcome", text)
    })?;
    check(&request)?;
    Ok(request)
}

/// The value rules serde cannot express.
pub fn check(request: &OutcomeRequest) -> Result<(), OutcomeError> {
    let mut problems: Vec<String> = Vec::new();
    if request.outcome_type == "report_viewed" {
        return Err(OutcomeError::refused(
            "report_viewed_not_accepted",
            "report views are recorded by the signed report-view link (comms.digest_views) and counted from there",
        ));
    }
    if request.schema.as_deref().is_some_and(|s| s != OUTCOME_V1) {
        problems.push(format!("schema: expected {OUTCOME_V1} or no schema key"));
    }
    let id = request.outcome_id.trim();
    if id.is_empty() || request.outcome_id.chars().count() > 200 || id.contains('\0') {
        problems.push("outcome_id: expected 1-200 characters, not blank".into());
    }
    for (field, value) in [
        ("source", Some(&request.source)),
        ("owner", request.owner.as_ref()),
    ] {
        if value.is_some_and(|v| v.trim().is_empty() || v.chars().count() > 200 || v.contains('\0'))
        {
            problems.push(format!("{field}: expected 1-200 characters, not blank"));
        }
    }
    match (
        request.outcome_type.as_str(),
        &request.booked,
        &request.review,
    ) {
        ("booked", Some(booked), None) => check_booked(booked, &mut problems),
        ("review", None, Some(review)) => check_review(review, &mut problems),
        ("booked", _, _) => problems.push("booked: expected a booked object and no review".into()),
        ("review", _, _) => problems.push("review: expected a review object and no booked".into()),
        _ => problems.push("type: expected booked or review".into()),
    }
    let a = &request.attributed_to;
    if a.message.is_none() && a.enrolment.is_none() && a.sequence.is_none() && a.record.is_none() {
        problems.push(
            "attributed_to: expected at least one of message, enrolment, sequence, record".into(),
        );
    }
    if a.sequence
        .as_deref()
        .is_some_and(|s| !crate::sequences::valid_name(s))
    {
        problems.push("attributed_to.sequence: expected a sequence name".into());
    }
    if a.message
        .as_deref()
        .is_some_and(|m| m.trim().is_empty() || m.len() > 200)
    {
        problems.push("attributed_to.message: expected a message id or idempotency key".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(OutcomeError::refused(
            "invalid_outcome",
            problems.join("; "),
        ))
    }
}

fn check_booked(booked: &Booked, problems: &mut Vec<String>) {
    if !["meeting", "sale"].contains(&booked.kind.as_str()) {
        problems.push("booked.kind: expected meeting or sale".into());
    }
    if booked
        .value
        .is_some_and(|v| !v.is_finite() || !(0.0..1e12).contains(&v))
    {
        problems.push("booked.value: expected a number from 0 to 10^12".into());
    }
    match &booked.currency {
        Some(c) if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) => {
            problems.push("booked.currency: expected an ISO 4217 code like USD".into());
        }
        Some(_) if booked.value.is_none() => {
            problems.push("booked.currency: expected only together with a value".into());
        }
        _ => {}
    }
}

fn check_review(review: &Review, problems: &mut Vec<String>) {
    if !["clicked", "reviewed", "declined"].contains(&review.result.as_str()) {
        problems.push("review.result: expected clicked, reviewed or declined".into());
    }
    if review.rating.is_some_and(|r| !(0.0..=10.0).contains(&r)) {
        problems.push("review.rating: expected a number from 0 to 10".into());
    }
    if review
        .platform
        .as_deref()
        .is_some_and(|p| p.trim().is_empty() || p.len() > 100)
    {
        problems.push("review.platform: expected 1-100 characters".into());
    }
}

/// `comms_outcomes_total{type, result}`: booked meetings and sales, review results.
pub fn metrics() -> &'static prometheus::IntCounterVec {
    static OUTCOMES: std::sync::LazyLock<prometheus::IntCounterVec> = std::sync::LazyLock::new(
        || {
            comms_runtime::metrics::counter(
                "comms_outcomes_total",
                "Outcomes recorded, by type and result (meeting, sale, clicked, reviewed, declined)",
                &["type", "result"],
            )
        },
    );
    &OUTCOMES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_json(json: serde_json::Value) -> Result<OutcomeRequest, OutcomeError> {
        parse(json.to_string().as_bytes())
    }

    #[test]
    fn a_booked_sale_and_a_review_parse() {
        let booked = parse_json(serde_json::json!({
            "outcome_id": "b-1", "type": "booked", "source": "crm",
            "booked": { "kind": "sale", "value": 1200.5, "currency": "USD" },
            "attributed_to": { "sequence": "winback" }
        }))
        .expect("valid");
        assert_eq!(booked.booked.and_then(|b| b.value), Some(1200.5));
        parse_json(serde_json::json!({
            "outcome_id": "r-1", "type": "review", "source": "link",
            "review": { "result": "reviewed", "platform": "google", "rating": 5 },
            "attributed_to": { "message": "welcome-0001" }
        }))
        .expect("valid");
    }

    #[test]
    fn bad_outcomes_are_refused_with_their_reason() {
        let refused = |json: serde_json::Value| parse_json(json).expect_err("refused").to_string();
        let text = refused(serde_json::json!({
            "outcome_id": " ", "type": "booked", "source": "crm",
            "booked": { "kind": "lunch", "currency": "usd" }, "attributed_to": {}
        }));
        for field in [
            "outcome_id:",
            "booked.kind:",
            "booked.currency:",
            "attributed_to:",
        ] {
            assert!(text.contains(field), "{field} in {text}");
        }
        let text = refused(serde_json::json!({
            "outcome_id": "v-1", "type": "report_viewed", "source": "portal",
            "attributed_to": { "message": "m" }
        }));
        assert!(text.starts_with("report_viewed_not_accepted"), "{text}");
        let text = refused(serde_json::json!({ "outcome_id": "x", "type": "booked", "extra": 1 }));
        assert!(text.starts_with("invalid_outcome"), "{text}");
    }
}
