//! The mail/send request body: the subset of SendGrid's v3 schema our sender uses, and the checks
//! SendGrid makes on it, with its error messages and field paths.

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

pub(super) fn validate(mail: &MailSend) -> Vec<(String, Option<String>)> {
    let mut problems = Vec::new();
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
