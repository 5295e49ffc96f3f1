//! The definition file of `commsctl sequences add --file F`: what a sequence says, checked before
//! anything is stored. Every problem is reported at once, by field, never echoing values.
//!
//! The escalation owner and the rollback path may be missing from a draft (it can be written
//! before they are known), but activation refuses a version without both
//! ([`Definition::missing_for_activation`]).

use chrono::NaiveTime;
use serde::{Deserialize, Serialize};

/// Exit rules a definition may name; a manual stop and a rollback always end an enrolment.
pub const EXITS: &[&str] = &["reply", "opt_out", "booked", "bounce"];

/// A definition as written (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefinitionFile {
    pub name: String,
    /// `leads` or `client_contacts`.
    pub audience: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackFile>,
    /// Which events end an enrolment; absent means all of [`EXITS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_on: Option<Vec<String>>,
    pub steps: Vec<StepFile>,
}

/// The rollback path: cancel the remaining steps (always), and optionally send a correction.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackFile {
    /// Must be `true`: a rollback always cancels the steps not sent yet.
    pub cancel_remaining: bool,
    /// An approved template `NAME@VERSION` sent once to every contact who already got a step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction_template: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// `sms` or `email`.
    pub channel: String,
    /// `outreach` (the default) or `review_request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// An approved template, `NAME@VERSION`.
    pub template: String,
    /// A delay after the previous step (after enrolment for the first): `0s`, `2d`, `36h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// A fixed local time `HH:MM` in the recipient's time zone (the first after the previous step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// When a step is due, relative to the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    After(std::time::Duration),
    At(NaiveTime),
}

/// A checked step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub position: i32,
    pub channel: String,
    pub kind: String,
    pub template_name: String,
    pub template_version: i32,
    pub timing: Timing,
}

/// A checked definition.
#[derive(Debug, Clone)]
pub struct Definition {
    pub file: DefinitionFile,
    pub exit_on: Vec<String>,
    pub correction: Option<(String, i32)>,
    pub steps: Vec<Step>,
}

impl Definition {
    /// Parses and checks a definition file; every problem is reported, `; `-separated.
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        let file: DefinitionFile = serde_json::from_slice(raw)
            .map_err(|e| format!("the definition is not valid JSON of the expected shape: {e}"))?;
        Self::check(file)
    }

    pub fn check(file: DefinitionFile) -> Result<Self, String> {
        let mut problems = Vec::new();
        if !super::valid_name(&file.name) {
            problems.push("name: expected [a-z0-9_.-]{1,100}".to_string());
        }
        if !["leads", "client_contacts"].contains(&file.audience.as_str()) {
            problems.push("audience: expected leads or client_contacts".into());
        }
        if file
            .escalation_owner
            .as_deref()
            .is_some_and(|o| o.trim().is_empty() || o.len() > 200)
        {
            problems.push("escalation_owner: expected 1-200 characters, not blank".into());
        }
        let mut correction = None;
        if let Some(rollback) = &file.rollback {
            if !rollback.cancel_remaining {
                problems.push("rollback.cancel_remaining: expected true (a rollback always cancels the remaining steps)".into());
            }
            if let Some(template) = &rollback.correction_template {
                match super::parse_ref(template) {
                    Some(found) => correction = Some(found),
                    None => {
                        problems.push("rollback.correction_template: expected NAME@VERSION".into())
                    }
                }
            }
        }
        let exit_on = file
            .exit_on
            .clone()
            .unwrap_or_else(|| EXITS.iter().map(|e| (*e).to_string()).collect());
        for (i, exit) in exit_on.iter().enumerate() {
            if !EXITS.contains(&exit.as_str()) {
                problems.push(format!(
                    "exit_on[{i}]: expected one of {}",
                    EXITS.join(", ")
                ));
            }
        }
        if file.steps.is_empty() || file.steps.len() > 50 {
            problems.push("steps: expected 1 to 50 steps".into());
        }
        let mut steps = Vec::new();
        for (i, step) in file.steps.iter().enumerate() {
            match check_step(i, step) {
                Ok(step) => steps.push(step),
                Err(mut found) => problems.append(&mut found),
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Self {
            file,
            exit_on,
            correction,
            steps,
        })
    }

    /// What activation still needs: the escalation owner and the rollback path.
    pub fn missing_for_activation(
        escalation_owner: Option<&str>,
        rollback: Option<&str>,
    ) -> Option<String> {
        let mut missing = Vec::new();
        if escalation_owner.is_none() {
            missing.push("no escalation owner");
        }
        if rollback.is_none() {
            missing.push("no rollback path");
        }
        (!missing.is_empty()).then(|| missing.join(" and "))
    }
}

fn check_step(i: usize, step: &StepFile) -> Result<Step, Vec<String>> {
    let mut problems = Vec::new();
    let at = |field: &str, problem: &str| format!("steps[{i}].{field}: {problem}");
    if !["sms", "email"].contains(&step.channel.as_str()) {
        problems.push(at("channel", "expected sms or email"));
    }
    let kind = step.kind.clone().unwrap_or_else(|| "outreach".into());
    if !["outreach", "review_request"].contains(&kind.as_str()) {
        problems.push(at("kind", "expected outreach or review_request"));
    }
    let template = super::parse_ref(&step.template);
    if template.is_none() {
        problems.push(at(
            "template",
            "expected an approved template as NAME@VERSION",
        ));
    }
    let timing = match (&step.after, &step.at) {
        (Some(after), None) => humantime::parse_duration(after)
            .ok()
            .filter(|d| d.as_secs() <= i32::MAX as u64)
            .map(Timing::After),
        (None, Some(local)) => NaiveTime::parse_from_str(local, "%H:%M")
            .ok()
            .map(Timing::At),
        _ => {
            problems.push(at(
                "after",
                "expected exactly one of after (a delay like 2d) or at (a local time HH:MM)",
            ));
            None
        }
    };
    if timing.is_none() && (step.after.is_some() != step.at.is_some()) {
        let field = if step.after.is_some() { "after" } else { "at" };
        let problem = if step.after.is_some() {
            "expected a delay like 0s, 90m, 2d"
        } else {
            "expected a local time HH:MM"
        };
        problems.push(at(field, problem));
    }
    match (template, timing) {
        (Some((template_name, template_version)), Some(timing)) if problems.is_empty() => {
            Ok(Step {
                position: i32::try_from(i + 1).unwrap_or(i32::MAX),
                channel: step.channel.clone(),
                kind,
                template_name,
                template_version,
                timing,
            })
        }
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<Definition, String> {
        Definition::parse(json.to_string().as_bytes())
    }

    #[test]
    fn a_full_definition_is_checked_and_normalised() {
        let def = parse(serde_json::json!({
            "name": "winback", "audience": "leads", "escalation_owner": "ana",
            "rollback": { "cancel_remaining": true, "correction_template": "sorry@1" },
            "steps": [
                { "channel": "sms", "template": "intro@2", "after": "0s" },
                { "channel": "email", "kind": "review_request", "template": "ask@1", "at": "09:30" }
            ]
        }))
        .expect("valid");
        assert_eq!(def.exit_on, EXITS);
        assert_eq!(def.correction, Some(("sorry".into(), 1)));
        assert_eq!(
            def.steps[0].timing,
            Timing::After(std::time::Duration::ZERO)
        );
        assert_eq!(def.steps[1].position, 2);
        assert_eq!(def.steps[1].kind, "review_request");
    }

    #[test]
    fn every_problem_is_reported_by_field() {
        let problems = parse(serde_json::json!({
            "name": "Win Back", "audience": "everyone", "exit_on": ["weather"],
            "rollback": { "cancel_remaining": false },
            "steps": [
                { "channel": "fax", "template": "intro", "after": "soon" },
                { "channel": "sms", "template": "a@1", "after": "1d", "at": "09:00" }
            ]
        }))
        .expect_err("invalid");
        for field in [
            "name:",
            "audience:",
            "exit_on[0]:",
            "rollback.cancel_remaining:",
            "steps[0].channel:",
            "steps[0].template:",
            "steps[0].after:",
            "steps[1].after:",
        ] {
            assert!(problems.contains(field), "{field} in {problems}");
        }
    }

    #[test]
    fn activation_needs_an_owner_and_a_rollback_path() {
        assert_eq!(
            Definition::missing_for_activation(None, None).as_deref(),
            Some("no escalation owner and no rollback path")
        );
        assert_eq!(
            Definition::missing_for_activation(Some("ana"), None).as_deref(),
            Some("no rollback path")
        );
        assert!(Definition::missing_for_activation(Some("ana"), Some("cancel")).is_none());
    }
}
