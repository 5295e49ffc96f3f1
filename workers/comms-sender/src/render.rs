//! Templates: render the approved version strictly (the version is found by
//! [`crate::rules::facts`], the same for both of the sender's paths).
//!
//! Strict means a variable the template uses but the request did not send is an error, never an
//! empty string: a message reading "Hi , your report is ready" is worse than no message.

use comms_domain::contract::ValidSendRequest;
use comms_domain::sms::{self, SmsAnalysis};
use minijinja::{Environment, UndefinedBehavior};

/// The content that will go out.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub template_version: i32,
    pub subject: Option<String>,
    pub body: String,
    /// Encoding and segments, for SMS.
    pub sms: Option<SmsAnalysis>,
}

impl Rendered {
    /// The form the ledger stores on the message.
    pub fn stored(&self) -> comms_domain::messages::ledger::record::Content<'_> {
        comms_domain::messages::ledger::record::Content {
            template_version: self.template_version,
            subject: self.subject.as_deref(),
            body: &self.body,
            sms_encoding: self.sms.map(|s| s.encoding.as_str()),
            sms_segments: self
                .sms
                .map(|s| i32::try_from(s.segments).unwrap_or(i32::MAX)),
        }
    }
}

/// Why content could not be produced, each a named reason.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template_not_found: no template {0}")]
    NotFound(String),
    #[error("template_not_approved: {0} has no approved version")]
    NotApproved(String),
    #[error(
        "template_channel_mismatch: {name} is for {template_channel}, the request is {channel}"
    )]
    ChannelMismatch {
        name: String,
        template_channel: String,
        channel: String,
    },
    #[error("template_render_failed: {0}")]
    Render(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl RenderError {
    /// The stable reason code (the text before the colon).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "template_not_found",
            Self::NotApproved(_) => "template_not_approved",
            Self::ChannelMismatch { .. } => "template_channel_mismatch",
            Self::Render(_) => "template_render_failed",
            Self::Db(_) => "database",
        }
    }
}

/// One stored template version, as rendering needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    pub name: String,
    pub version: i32,
    pub channel: String,
    pub subject: Option<String>,
    pub body: String,
    pub state: String,
}

/// Checks that `row` (the version the sender's loader found for `request`,
/// [`crate::rules::facts::template`]) may be used, and renders it.
pub fn render_row(
    row: Option<&TemplateRow>,
    request: &ValidSendRequest,
) -> Result<Rendered, RenderError> {
    let name = &request.template.name;
    let label = match request.template.version {
        Some(v) => format!("{name}@{v}"),
        None => name.clone(),
    };
    let row = row.ok_or_else(|| RenderError::NotFound(label.clone()))?;
    if row.state != "approved" {
        return Err(RenderError::NotApproved(label));
    }
    let channel = request.channel.as_str();
    if row.channel != channel {
        return Err(RenderError::ChannelMismatch {
            name: label,
            template_channel: row.channel.clone(),
            channel: channel.to_string(),
        });
    }
    let vars = serde_json::Value::Object(request.template.vars.clone());
    let body = render_strict(&row.body, &vars)?;
    let subject = row
        .subject
        .as_deref()
        .map(|s| render_strict(s, &vars))
        .transpose()?;
    let sms = (channel == "sms").then(|| sms::analyse(&body));
    Ok(Rendered {
        template_version: row.version,
        subject,
        body,
        sms,
    })
}

/// Renders `source` with `vars`; any undefined variable is an error naming it.
pub fn render_strict(source: &str, vars: &serde_json::Value) -> Result<String, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let template = env
        .template_from_str(source)
        .map_err(|e| RenderError::Render(describe(&e)))?;
    template
        .render(vars)
        .map_err(|e| RenderError::Render(describe(&e)))
}

fn describe(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{} ({detail})", error.kind()),
        None => error.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_variable_must_be_present() {
        let ok = render_strict("Hi {{ name }}!", &json!({"name": "Ana"})).expect("renders");
        assert_eq!(ok, "Hi Ana!");
        let err = render_strict("Hi {{ name }}, see {{ link }}", &json!({"name": "Ana"}))
            .expect_err("link is missing");
        assert_eq!(err.code(), "template_render_failed");
        assert!(err.to_string().contains("undefined"), "{err}");
    }

    #[test]
    fn a_missing_nested_attribute_is_an_error_too() {
        let err = render_strict("{{ report.title }}", &json!({"report": {}})).expect_err("missing");
        assert_eq!(err.code(), "template_render_failed");
    }

    #[test]
    fn a_broken_template_is_reported_not_sent() {
        let err = render_strict("Hi {{ name ", &json!({"name": "Ana"})).expect_err("syntax");
        assert!(
            err.to_string().starts_with("template_render_failed"),
            "{err}"
        );
    }
}
