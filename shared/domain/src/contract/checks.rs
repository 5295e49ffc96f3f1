//! The value checks behind [`validate`](super::validate()), one per kind of field.
//!
//! They live apart from the parsing pipeline so each rule (what a valid phone, email, UUID,
//! timestamp or template reference is, and the problem text when it is not) sits in one place
//! next to its siblings. Every check records its problem and carries on, so one request yields
//! every error at once.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use email_address::{EmailAddress, Options};
use serde_json::Value;
use uuid::Uuid;

use super::Channel;
use super::describe::kind;
use super::error::FieldError;
use super::valid::{Recipient, Template};
use super::wire::RecipientInput;

/// Longest idempotency key, owner, source, trigger, name or consent source, in characters.
pub const MAX_TEXT_CHARS: usize = 200;
/// Longest email address (RFC 5321 path limit less the angle brackets).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest template name.
pub const MAX_TEMPLATE_NAME_CHARS: usize = 100;
/// Highest template version (it must fit a PostgreSQL `integer`).
pub const MAX_TEMPLATE_VERSION: u32 = 2_147_483_647;

/// Collects value errors; each check returns the normalised value, or `None` after recording
/// why there is none.
#[derive(Default)]
pub(super) struct Checker {
    pub(super) errors: Vec<FieldError>,
}

impl Checker {
    pub(super) fn fail(&mut self, field: &str, problem: impl Into<String>) {
        self.errors.push(FieldError::new(field, problem));
    }

    /// Non-blank after trimming, at most [`MAX_TEXT_CHARS`] as sent; returns it trimmed.
    pub(super) fn text(&mut self, field: &str, value: &str) -> String {
        self.text_length(field, value);
        value.trim().to_owned()
    }

    /// Records a problem unless `value` has 1–[`MAX_TEXT_CHARS`] characters and is not blank.
    pub(super) fn text_length(&mut self, field: &str, value: &str) {
        let chars = value.chars().count();
        let expected = format!("expected 1–{MAX_TEXT_CHARS} characters, not only whitespace");
        if value.trim().is_empty() {
            let found = if chars == 0 {
                "an empty string"
            } else {
                "a blank string"
            };
            self.fail(field, format!("{expected}; found {found}"));
        } else if chars > MAX_TEXT_CHARS {
            self.fail(
                field,
                format!("{expected}; found a string of {chars} characters"),
            );
        }
    }

    /// A hyphenated UUID (`8-4-4-4-12` hex), the only form the schema allows.
    pub(super) fn uuid(&mut self, field: &str, value: &str) -> Option<Uuid> {
        let parsed = Some(value)
            .filter(|v| v.len() == 36)
            .and_then(|v| Uuid::try_parse(v).ok());
        if parsed.is_none() {
            self.fail(
                field,
                "expected a UUID like 123e4567-e89b-12d3-a456-426614174000; \
                 found a string that is not one",
            );
        }
        parsed
    }

    pub(super) fn instant(&mut self, field: &str, value: &str) -> Option<DateTime<Utc>> {
        match DateTime::parse_from_rfc3339(value) {
            Ok(at) => Some(at.with_timezone(&Utc)),
            Err(e) => {
                // chrono's reasons name the problem (`premature end of input`), not the text.
                let problem = format!(
                    "expected an RFC 3339 timestamp like 2025-05-01T09:00:00Z; \
                     found a string that is not one ({e})"
                );
                self.fail(field, problem);
                None
            }
        }
    }

    pub(super) fn template(
        &mut self,
        name: String,
        version: Option<i64>,
        vars: Value,
    ) -> Option<Template> {
        let name_ok = (1..=MAX_TEMPLATE_NAME_CHARS).contains(&name.len())
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
        if !name_ok {
            let problem = format!(
                "expected a name matching [a-z0-9_.-]{{1,{MAX_TEMPLATE_NAME_CHARS}}}; \
                 found a string that does not match"
            );
            self.fail("template.name", problem);
        }
        let version = match version.map(u32::try_from) {
            None => Some(None),
            Some(Ok(v @ 1..=MAX_TEMPLATE_VERSION)) => Some(Some(v)),
            Some(_) => {
                let problem = format!(
                    "expected an integer from 1 to {MAX_TEMPLATE_VERSION}; found a number out of range"
                );
                self.fail("template.version", problem);
                None
            }
        };
        let vars = match vars {
            Value::Object(vars) => Some(vars),
            other => {
                let problem = format!("expected a JSON object; found {}", kind(&other));
                self.fail("template.vars", problem);
                None
            }
        };
        match (name_ok, version, vars) {
            (true, Some(version), Some(vars)) => Some(Template {
                name,
                version,
                vars,
            }),
            _ => None,
        }
    }

    pub(super) fn recipient(&mut self, r: &RecipientInput, channel: Channel) -> Option<Recipient> {
        let name = r.name.as_deref().map(|n| self.text("recipient.name", n));
        let time_zone = match r.time_zone.as_deref() {
            None => Some(None),
            Some(tz) => match tz.parse::<Tz>() {
                Ok(tz) => Some(Some(tz)),
                Err(_) => {
                    self.fail(
                        "recipient.time_zone",
                        "expected an IANA time zone name like America/New_York; \
                         found a string that is not one",
                    );
                    None
                }
            },
        };
        match (&r.contact_id, &r.phone, &r.email) {
            (Some(id), None, None) => {
                for (key, given) in [
                    ("name", r.name.is_some()),
                    ("time_zone", r.time_zone.is_some()),
                ] {
                    if given {
                        let problem = "expected no value with contact_id (the contact record \
                                       holds it); found a string";
                        self.fail(&format!("recipient.{key}"), problem);
                    }
                }
                let contact_id = self.uuid("recipient.contact_id", id);
                contact_id
                    .filter(|_| r.name.is_none() && r.time_zone.is_none())
                    .map(|contact_id| Recipient::Contact { contact_id })
            }
            (None, Some(phone), None) => {
                let fits = self.fits(channel, Channel::Email, "an email or contact_id");
                let phone = self.phone(phone);
                match (fits, phone, time_zone) {
                    (true, Some(phone), Some(time_zone)) => Some(Recipient::Phone {
                        phone,
                        name,
                        time_zone,
                    }),
                    _ => None,
                }
            }
            (None, None, Some(email)) => {
                let fits = self.fits(channel, Channel::Sms, "a phone or contact_id");
                let email = self.email(email);
                match (fits, email, time_zone) {
                    (true, Some(email), Some(time_zone)) => Some(Recipient::Email {
                        email,
                        name,
                        time_zone,
                    }),
                    _ => None,
                }
            }
            _ => {
                let given: Vec<&str> = [
                    ("contact_id", r.contact_id.is_some()),
                    ("phone", r.phone.is_some()),
                    ("email", r.email.is_some()),
                ]
                .into_iter()
                .filter_map(|(key, present)| present.then_some(key))
                .collect();
                let found = if given.is_empty() {
                    "none of them".to_owned()
                } else {
                    given.join(" and ")
                };
                let problem =
                    format!("expected exactly one of contact_id, phone, email; found {found}");
                self.fail("recipient", problem);
                None
            }
        }
    }

    /// Records a problem when the recipient's address kind cannot serve `channel`.
    fn fits(&mut self, channel: Channel, refused: Channel, needs: &str) -> bool {
        if channel == refused {
            let found = if refused == Channel::Email {
                "a phone"
            } else {
                "an email"
            };
            self.fail(
                "recipient",
                format!("expected {needs} recipient for channel {channel}; found {found}"),
            );
        }
        channel != refused
    }

    /// `+`, country code and number; spaces, dots, dashes and parentheses are tolerated and
    /// dropped. Returns E.164.
    fn phone(&mut self, raw: &str) -> Option<String> {
        const FIELD: &str = "recipient.phone";
        let shaped = raw.strip_prefix('+').is_some_and(|rest| {
            rest.starts_with(|c: char| c.is_ascii_digit())
                && rest
                    .chars()
                    .all(|c| c.is_ascii_digit() || " ().-".contains(c))
        });
        if !shaped {
            self.fail(
                FIELD,
                "expected E.164: + then country code and number, digits only; \
                 found a string that is not one",
            );
            return None;
        }
        match phonenumber::parse(None, raw) {
            Ok(number) if number.is_valid() => {
                Some(number.format().mode(phonenumber::Mode::E164).to_string())
            }
            Ok(_) => {
                self.fail(
                    FIELD,
                    "expected a phone number valid for its country code; found one that is not",
                );
                None
            }
            Err(e) => {
                // libphonenumber's reasons name the problem (`too long`), not the number.
                let problem =
                    format!("expected a phone number; found a string that is not one ({e})");
                self.fail(FIELD, problem);
                None
            }
        }
    }

    /// A plain address (no display name, no domain literal, a dotted domain); returns it with
    /// the domain lower-cased.
    fn email(&mut self, raw: &str) -> Option<String> {
        const FIELD: &str = "recipient.email";
        let chars = raw.chars().count();
        if chars > MAX_EMAIL_CHARS {
            let problem = format!(
                "expected at most {MAX_EMAIL_CHARS} characters; found a string of {chars} characters"
            );
            self.fail(FIELD, problem);
            return None;
        }
        let options = Options::default()
            .with_required_tld()
            .without_domain_literal()
            .without_display_text();
        match EmailAddress::parse_with_options(raw, options) {
            Ok(address) => Some(format!(
                "{}@{}",
                address.local_part(),
                address.domain().to_lowercase()
            )),
            Err(e) => {
                // The parser's reasons name the problem (`Missing separator character '@'`).
                let problem =
                    format!("expected an email address; found a string that is not one ({e})");
                self.fail(FIELD, problem);
                None
            }
        }
    }
}

/// A phone number checked as a request's `recipient.phone` is: its E.164 form, or what is wrong
/// with it. For the places that take an address outside a request (erasure).
pub fn phone_number(raw: &str) -> Result<String, String> {
    let mut checker = Checker::default();
    checker.phone(raw).ok_or_else(|| checker.problems())
}

/// An email address checked as a request's `recipient.email` is: with its domain lower-cased, or
/// what is wrong with it.
pub fn email_address(raw: &str) -> Result<String, String> {
    let mut checker = Checker::default();
    checker.email(raw).ok_or_else(|| checker.problems())
}

impl Checker {
    /// Every recorded problem, in one line.
    fn problems(&self) -> String {
        let problems: Vec<&str> = self.errors.iter().map(|e| e.problem.as_str()).collect();
        problems.join("; ")
    }
}
