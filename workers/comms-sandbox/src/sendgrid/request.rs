//! The mail/send request body: the subset of SendGrid's v3 schema our sender uses, and the checks
//! SendGrid makes on it, with its error messages and field paths (SendGrid's "v3 Mail Send
//! errors" reference), so a request SendGrid would refuse is refused here too.

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
pub(super) struct MailSend {
    #[serde(default)]
    pub(super) personalizations: Vec<Personalization>,
    pub(super) from: Option<Address>,
    pub(super) subject: Option<String>,
    #[serde(default)]
    pub(super) content: Vec<Content>,
    pub(super) template_id: Option<String>,
    pub(super) custom_args: Option<Map<String, Value>>,
    pub(super) headers: Option<Map<String, Value>>,
    pub(super) reply_to: Option<Address>,
    pub(super) categories: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct Personalization {
    #[serde(default)]
    pub(super) to: Vec<Address>,
    pub(super) subject: Option<String>,
    pub(super) custom_args: Option<Map<String, Value>>,
    pub(super) headers: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
pub(super) struct Address {
    pub(super) email: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Content {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) value: Option<String>,
}

/// Headers SendGrid sets itself and refuses in `headers` (compared without regard to case).
pub(super) const RESERVED_HEADERS: [&str; 12] = [
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "Content-Type",
    "Content-Transfer-Encoding",
    "To",
    "From",
    "Subject",
    "Reply-To",
    "CC",
    "BCC",
];
const MAX_PERSONALIZATIONS: usize = 1000;
const MAX_CATEGORIES: usize = 10;

type Problems = Vec<(String, Option<String>)>;

fn custom_args_problem(args: &Option<Map<String, Value>>, field: String, problems: &mut Problems) {
    if args
        .as_ref()
        .is_some_and(|a| a.values().any(|v| !v.is_string()))
    {
        let message = "All values of custom arguments object must be strings";
        problems.push((message.to_owned(), Some(field)));
    }
}

/// `top` picks SendGrid's wording, which differs slightly between the message and a
/// personalization.
fn header_problems(
    headers: &Option<Map<String, Value>>,
    field: String,
    top: bool,
    problems: &mut Problems,
) {
    let Some(headers) = headers else {
        return;
    };
    if headers.values().any(|v| !v.is_string()) {
        let message = if top {
            "The header values must be strings."
        } else {
            "All values of the headers object must be strings."
        };
        problems.push((message.to_owned(), Some(field.clone())));
    }
    let reserved = headers
        .keys()
        .any(|k| RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(k)));
    if reserved {
        let message = if top {
            "Header can not be one of the reserved keys."
        } else {
            "Header cannot be one of the reserved keys."
        };
        problems.push((message.to_owned(), Some(field)));
    }
}

fn category_problems(categories: &Option<Value>, problems: &mut Problems) {
    let Some(categories) = categories else {
        return;
    };
    let field = Some("categories".to_owned());
    let Some(list) = categories
        .as_array()
        .filter(|l| l.iter().all(Value::is_string))
    else {
        problems.push(("Categories must be an array of strings.".into(), field));
        return;
    };
    if list.len() > MAX_CATEGORIES {
        let message = format!(
            "There is a limit of 10 categories for each email that is sent. You provided {} categories.",
            list.len()
        );
        problems.push((message, field));
    }
}

/// RFC 1341 §7.2 as SendGrid applies it: `text/plain` first when present, then `text/html`, then
/// anything else.
fn content_order_problem(content: &[Content], problems: &mut Problems) {
    let position = |kind: &str| {
        content.iter().position(|c| {
            c.kind
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(kind))
        })
    };
    let plain = position("text/plain");
    let html = position("text/html");
    let plain_ok = plain.is_none_or(|i| i == 0);
    let html_ok = html.is_none_or(|i| i == usize::from(plain.is_some()));
    if !(plain_ok && html_ok) {
        let message = "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent in your email: text/plain needs to be first, followed by text/html, followed by any other content.";
        problems.push((message.to_owned(), Some("content".into())));
    }
}

fn is_email(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>')
}

pub(super) fn validate(mail: &MailSend) -> Problems {
    let mut problems = Vec::new();
    let count = mail.personalizations.len();
    if count > MAX_PERSONALIZATIONS {
        let message = format!(
            "The personalization block is limited to 1000 personalizations per API request. You have provided {count} personalizations. Please consider splitting this into multiple requests and resending your request."
        );
        problems.push((message, Some("personalizations".into())));
    }
    for (i, p) in mail.personalizations.iter().enumerate() {
        let at = |name: &str| format!("personalizations.{i}.{name}");
        custom_args_problem(&p.custom_args, at("custom_args"), &mut problems);
        header_problems(&p.headers, at("headers"), false, &mut problems);
    }
    custom_args_problem(&mail.custom_args, "custom_args".into(), &mut problems);
    header_problems(&mail.headers, "headers".into(), true, &mut problems);
    category_problems(&mail.categories, &mut problems);
    content_order_problem(&mail.content, &mut problems);
    let mut problem =
        |message: &str, field: String| problems.push((message.to_owned(), Some(field)));
    if mail.personalizations.is_empty() {
        problem(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations".into(),
        );
    }
    for (i, p) in mail.personalizations.iter().enumerate() {
        if p.to.is_empty() {
            problem(
                "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
                format!("personalizations.{i}.to"),
            );
        }
        for (j, to) in p.to.iter().enumerate() {
            if !to.email.as_deref().is_some_and(is_email) {
                problem(
                    "Does not contain a valid address.",
                    format!("personalizations.{i}.to.{j}.email"),
                );
            }
        }
    }
    match mail.from.as_ref().and_then(|f| f.email.as_deref()) {
        None => problem(
            "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.",
            "from.email".into(),
        ),
        Some(email) if !is_email(email) => {
            problem(
                "The from email does not contain a valid address.",
                "from.email".into(),
            );
        }
        Some(_) => {}
    }
    if let Some(reply_to) = &mail.reply_to
        && !reply_to.email.as_deref().is_some_and(is_email)
    {
        problem(
            "The reply_to email does not contain a valid address.",
            "reply_to.email".into(),
        );
    }
    let templated = mail.template_id.as_deref().is_some_and(|t| !t.is_empty());
    let has_subject = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    let every_personalization_has_subject = !mail.personalizations.is_empty()
        && mail
            .personalizations
            .iter()
            .all(|p| has_subject(&p.subject));
    if !templated && !has_subject(&mail.subject) && !every_personalization_has_subject {
        problem(
            "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
            "subject".into(),
        );
    }
    if !templated && mail.content.is_empty() {
        problem(
            "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block.",
            "content".into(),
        );
    }
    for (i, c) in mail.content.iter().enumerate() {
        if c.value.as_deref().is_none_or(str::is_empty) {
            problem(
                "The content value must be a string at least one character in length.",
                format!("content.{i}.value"),
            );
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn email_shape() {
        assert!(is_email("a@example.com"));
        assert!(!is_email("example.com"));
        assert!(!is_email("a@localhost"));
        assert!(!is_email("a b@example.com"));
    }

    #[test]
    fn validation_lists_each_problem() -> Result<(), serde_json::Error> {
        let mail: MailSend = serde_json::from_value(json!({
            "personalizations": [{ "to": [{ "email": "nope" }] }],
            "content": [{ "type": "text/plain", "value": "" }]
        }))?;
        let fields: Vec<Option<String>> = validate(&mail).into_iter().map(|(_, f)| f).collect();
        for expected in [
            "personalizations.0.to.0.email",
            "from.email",
            "subject",
            "content.0.value",
        ] {
            assert!(
                fields.contains(&Some(expected.to_owned())),
                "{expected} missing in {fields:?}"
            );
        }
        Ok(())
    }
}
