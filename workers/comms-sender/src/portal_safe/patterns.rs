//! The patterns behind the portal-safe check, compiled once.
//!
//! Each rule is a regular expression plus, where a shape alone is not proof, a second look at
//! what it matched (enough digits for a phone number, a valid Luhn sum for a card). Rules run in
//! a fixed order and a later rule ignores text an earlier one already claimed, so a Twilio SID is
//! reported as a provider id rather than also as a phone number.

use std::sync::LazyLock;

use regex::Regex;

/// One class of leak found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub code: &'static str,
    /// What was found, for a sentence ("a phone number").
    pub what: &'static str,
    pub count: usize,
    /// Byte offset of the first occurrence.
    pub first: usize,
}

struct Rule {
    code: &'static str,
    what: &'static str,
    regex: Regex,
    /// A second look at a match; `None` accepts every match.
    accept: Option<fn(&str) -> bool>,
}

pub struct Patterns {
    rules: Vec<Rule>,
    roi: Regex,
    source: Regex,
}

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern)
        .unwrap_or_else(|e| panic!("portal-safe pattern {pattern} is malformed: {e}"))
}

fn rule(code: &'static str, what: &'static str, pattern: &str) -> Rule {
    Rule {
        code,
        what,
        regex: compile(pattern),
        accept: None,
    }
}

fn digits(text: &str) -> usize {
    text.chars().filter(char::is_ascii_digit).count()
}

fn phone_like(text: &str) -> bool {
    let n = digits(text);
    let iso_date = compile_date().is_match(text);
    !iso_date
        && if text.starts_with('+') {
            (8..=15).contains(&n)
        } else {
            (10..=15).contains(&n)
        }
}

fn compile_date() -> &'static Regex {
    static DATE: LazyLock<Regex> = LazyLock::new(|| compile(r"^\d{4}-\d{2}-\d{2}"));
    &DATE
}

/// A card number: 13 to 19 digits with a valid Luhn checksum.
fn luhn(text: &str) -> bool {
    let numbers: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&numbers.len()) {
        return false;
    }
    let sum: u32 = numbers
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn long_account(text: &str) -> bool {
    digits(text) >= 6
}

impl Patterns {
    pub fn get() -> &'static Self {
        static PATTERNS: LazyLock<Patterns> = LazyLock::new(Patterns::new);
        &PATTERNS
    }

    fn new() -> Self {
        let rules = vec![
            rule(
                "provider_id",
                "provider id (Twilio SID or SendGrid id)",
                r"\b(?:SM|MM|AC|MG|PN|SK|CA|RE|IS|CH)[0-9a-fA-F]{32}\b|(?i:\b(?:sg_message_id|sg_event_id|x-message-id)\b)|\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}|\b[A-Za-z0-9_-]{8,}\.filter[A-Za-z0-9_-]*",
            ),
            rule(
                "raw_payload",
                "raw payload (JSON or XML)",
                r#"\{\s*"[^"\n]{0,100}"\s*:|\[\s*(?:\{\s*"|\[|"[^"\n]{0,100}"\s*[,\]])|"[A-Za-z_][\w.-]{0,60}"\s*:\s*(?:"|-?\d|true\b|false\b|null\b|\{|\[)|<\?xml\b"#,
            ),
            rule(
                "stack_trace",
                "stack trace or error dump",
                r#"(?m)^\s+at\s+[\w$<>]+(?:\.[\w$<>]+)+\s*\(|Traceback \(most recent call last\)|(?m)^\s*File "[^"]+", line \d+|panicked at|\b[A-Z][A-Za-z]*(?:Error|Exception):|\b[\w./-]+\.(?:rs|py|js|ts|java|go|rb|php|cs):\d+\b"#,
            ),
            rule(
                "sql",
                "SQL statement or database error",
                r#"\bSELECT\b[^;\n]{1,200}?\bFROM\b|\b(?:INSERT\s+INTO|DELETE\s+FROM|DROP\s+TABLE|CREATE\s+TABLE|ALTER\s+TABLE)\b|\bUPDATE\s+[\w."]+\s+SET\b|(?i:\bselect\s+\*\s+from\b|\b(?:insert\s+into|delete\s+from|update)\s+[a-z_]+\.[a-z_]+|\bwhere\s+[a-z_][\w.]*\s*(?:=|<>|!=)\s*(?:'|\$\d)|syntax error at or near|duplicate key value violates|violates (?:foreign key|check|unique) constraint)"#,
            ),
            rule(
                "email_address",
                "email address",
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            ),
            Rule {
                accept: Some(luhn),
                ..rule("card_number", "card number", r"\b\d(?:[ -]?\d){12,18}\b")
            },
            Rule {
                accept: Some(long_account),
                ..rule(
                    "account_number",
                    "account number",
                    r"(?i:\b(?:account|acct|a/c|iban|routing|sort code|bsb)\b(?:\s*(?:number|no\.?|num|#))?\s*[:#]?\s*)[A-Za-z0-9][A-Za-z0-9 -]{4,}[0-9]",
                )
            },
            rule(
                "account_number",
                "account number",
                r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b",
            ),
            rule(
                "national_id",
                "national id number",
                r"\b\d{3}-\d{2}-\d{4}\b",
            ),
            Rule {
                accept: Some(phone_like),
                ..rule(
                    "phone_number",
                    "phone number",
                    r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\b\d{2,4})(?:[\s.-]?\d{2,4}){2,4}\b",
                )
            },
        ];
        Self {
            rules,
            roi: compile(
                r"(?i)\b(?:roi|return on investment|revenue|profits?)\b|\d\s?%|\bper ?cent\b",
            ),
            source: compile(r"(?im)^\s*source:\s*\S"),
        }
    }

    /// Every class of leak in `text`, in rule order, each once.
    pub fn leaks(&self, text: &str) -> Vec<Finding> {
        let mut claimed: Vec<(usize, usize)> = Vec::new();
        let mut findings: Vec<Finding> = Vec::new();
        for rule in &self.rules {
            let mut found: Vec<(usize, usize)> = Vec::new();
            for m in rule.regex.find_iter(text) {
                let overlaps = claimed.iter().any(|&(s, e)| m.start() < e && s < m.end());
                if overlaps || rule.accept.is_some_and(|accept| !accept(m.as_str())) {
                    continue;
                }
                found.push((m.start(), m.end()));
            }
            let Some(&(first, _)) = found.first() else {
                continue;
            };
            claimed.extend_from_slice(&found);
            match findings.iter_mut().find(|f| f.code == rule.code) {
                Some(existing) => {
                    existing.count += found.len();
                    existing.first = existing.first.min(first);
                }
                None => findings.push(Finding {
                    code: rule.code,
                    what: rule.what,
                    count: found.len(),
                    first,
                }),
            }
        }
        findings
    }

    /// Whether the text talks about ROI, revenue, profit or percentages.
    pub fn roi_claim(&self, text: &str) -> bool {
        self.roi.is_match(text)
    }

    /// Whether a line starts with `Source:` and names something.
    pub fn has_source(&self, text: &str) -> bool {
        self.source.is_match(text)
    }
}
