//! The portal-safe check: what a client may read in the portal must be short, factual, sourced
//! and free of internal material.
//!
//! It runs in the sender on everything portal-visible (the portal channel, and `portal_update`
//! on any channel) before the approval gate, so an owner is never asked to approve wording the
//! portal must not show. A failing check names every class of problem it found (with where the
//! first one starts, never the offending text itself, which may be private), and the message is
//! `blocked` as `portal_unsafe` with those problems in its event and its owner's task.
//!
//! The rules (`docs/approvals.md` lists them for people):
//! - at most `approvals.portal_max_chars` characters (subject and body);
//! - no raw payloads: JSON objects or arrays, stack traces, provider ids (Twilio SIDs, SendGrid
//!   message ids and keys), SQL;
//! - no private details: phone numbers, email addresses, card, account or national-id numbers —
//!   a masked form (`***-***-2671`, `d***@acme.com`, "account ending 1234") is fine;
//! - ROI or revenue claims (`contains_roi`, or text about ROI, revenue, profit or percentages)
//!   carry a `Source: …` line and a caveat;
//! - incident notices carry an incident caveat, report digests say how current their data is.

mod patterns;
#[cfg(test)]
mod tests;

use comms_domain::contract::{Channel, Kind, ValidSendRequest};
use serde::Serialize;

use patterns::Patterns;

/// Caveat phrases (lowercase) an incident notice must use one of.
pub const INCIDENT_CAVEATS: &[&str] = &[
    "still investigating",
    "under investigation",
    "initial assessment",
    "preliminary",
    "details may change",
    "may change as we learn more",
    "we will share more",
    "we will update you",
    "next update",
];

/// Caveat phrases an ROI or revenue claim must use one of.
pub const ROI_CAVEATS: &[&str] = &[
    "estimate",
    "approximately",
    "projected",
    "preliminary",
    "may vary",
    "results vary",
    "not guaranteed",
    "based on",
];

/// Phrases that say how current a report digest's data is.
pub const FRESHNESS_CAVEATS: &[&str] = &[
    "as of",
    "last updated",
    "data through",
    "for the period",
    "may be delayed",
];

/// Whether the check applies to this request.
pub fn applies(request: &ValidSendRequest) -> bool {
    request.channel == Channel::Portal || request.kind == Kind::PortalUpdate
}

/// The wording to check and what it claims to be.
#[derive(Debug, Clone, Copy)]
pub struct Wording<'a> {
    pub kind: Kind,
    pub contains_roi: bool,
    pub subject: Option<&'a str>,
    pub body: &'a str,
}

/// One class of problem, once, with where its first occurrence starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub code: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code, self.detail)
    }
}

/// Every problem of `wording`; empty when it is portal-safe.
pub fn check(wording: &Wording<'_>, max_chars: usize) -> Vec<Problem> {
    let text = match wording.subject {
        Some(subject) => format!("{subject}\n{}", wording.body),
        None => wording.body.to_string(),
    };
    let mut problems = Vec::new();
    let length = text.chars().count();
    if length > max_chars {
        problems.push(Problem {
            code: "too_long",
            detail: format!("{length} characters; portal wording is at most {max_chars}"),
        });
    }
    let patterns = Patterns::get();
    for finding in patterns.leaks(&text) {
        let noun = if finding.count == 1 { "one" } else { "several" };
        problems.push(Problem {
            code: finding.code,
            detail: format!(
                "{noun} {}, the first at character {}",
                finding.what,
                char_position(&text, finding.first)
            ),
        });
    }
    let lower = text.to_lowercase();
    let roi_claim = wording.contains_roi || patterns.roi_claim(&text);
    if roi_claim && !patterns.has_source(&text) {
        problems.push(Problem {
            code: "source_missing",
            detail:
                "ROI or revenue claims need a `Source: …` line naming where the figures come from"
                    .into(),
        });
    }
    let caveats: [(bool, &str, &[&str]); 3] = [
        (
            wording.kind == Kind::IncidentNotice,
            "an incident notice",
            INCIDENT_CAVEATS,
        ),
        (roi_claim, "an ROI or revenue claim", ROI_CAVEATS),
        (
            wording.kind == Kind::ReportDigest,
            "a report digest's data (how current it is)",
            FRESHNESS_CAVEATS,
        ),
    ];
    for (needed, what, phrases) in caveats {
        if needed && !phrases.iter().any(|p| lower.contains(p)) {
            problems.push(Problem {
                code: "caveat_missing",
                detail: format!(
                    "{what} needs a caveat, one of: {}",
                    phrases
                        .iter()
                        .map(|p| format!("\"{p}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    problems
}

/// 1-based character position of a byte offset, for a person to find the spot.
fn char_position(text: &str, byte: usize) -> usize {
    text.char_indices().take_while(|(i, _)| *i < byte).count() + 1
}
