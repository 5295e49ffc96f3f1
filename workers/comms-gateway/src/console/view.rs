//! Rendering console pages: the templates (embedded, so the binary is self-contained), the
//! layout every page shares, the error page, and the small formatting helpers templates use.
//!
//! Templates are named `*.html`, so minijinja escapes every value by default: content a client or
//! an upstream app wrote (a message body, a reason) is shown as text, never as markup.

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use minijinja::{Environment, Value, context};

use super::session::Operator;

macro_rules! templates {
    ($env:ident, $($name:literal),+ $(,)?) => {
        $(
            if let Err(error) = $env.add_template(
                $name,
                include_str!(concat!("../../templates/console/", $name)),
            ) {
                tracing::error!(%error, template = $name, "console template does not parse");
            }
        )+
    };
}

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    templates!(
        env,
        "layout.html",
        "login.html",
        "error.html",
        "home.html",
        "home_live.html",
        "pause.html",
        "pause_confirm.html",
        "approvals.html",
        "tasks.html",
        "messages.html",
        "message.html",
        "dead.html",
        "incidents.html",
        "incident.html",
        "digests.html",
        "digest.html",
    );
    env.add_filter("when", when);
    env.add_filter("ago", ago);
    env
});

/// `2026-11-30T07:12:03.123Z` → `2026-11-30 07:12:03 UTC`; anything else as it is.
fn when(value: String) -> String {
    DateTime::parse_from_rfc3339(&value)
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or(value)
}

/// The age of an RFC 3339 time, or a number of seconds, as `42s`, `7m`, `3h 5m`, `2d 4h`.
fn ago(value: Value) -> String {
    let seconds = match value.as_str() {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| (Utc::now() - t.with_timezone(&Utc)).num_seconds())
            .unwrap_or(0),
        None => f64::try_from(value).map(|s| s as i64).unwrap_or(0),
    };
    human_age(seconds)
}

/// A duration in seconds, in the largest two units that matter.
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A recipient shown without revealing it: the first and last characters of a phone number, the
/// first letter and the domain of an email address.
pub fn mask_recipient(address: &str) -> String {
    if let Some((local, domain)) = address.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}•••@{domain}");
    }
    let chars: Vec<char> = address.chars().collect();
    if chars.len() <= 6 {
        return "•••".to_string();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}•••{tail}")
}

/// Renders `template` alone, as HTML safe to place in a page.
pub fn render(template: &str, ctx: Value) -> Result<Value, minijinja::Error> {
    TEMPLATES
        .get_template(template)
        .and_then(|t| t.render(ctx))
        .map(Value::from_safe_string)
}

/// Renders `template` alone (a fragment the page refreshes in place).
pub fn fragment(template: &str, ctx: Value) -> Response {
    match render(template, ctx) {
        Ok(html) => Html(html.to_string()).into_response(),
        Err(error) => broken(template, &error),
    }
}

/// Renders `template` inside the layout, for a signed-in operator (or none, on the login page).
pub fn page(
    status: StatusCode,
    title: &str,
    operator: Option<&Operator>,
    template: &str,
    ctx: Value,
) -> Response {
    // Every page's forms need the session's CSRF token.
    let ctx = match operator {
        Some(operator) => context! { csrf => operator.csrf(), ..ctx },
        None => ctx,
    };
    let body = match render(template, ctx) {
        Ok(body) => body,
        Err(error) => return broken(template, &error),
    };
    let layout = context! {
        title,
        body,
        operator => operator.map(|o| context! {
            name => o.caller.name.clone(),
            role => o.caller.role.as_str(),
            owner => o.is_owner(),
            csrf => o.csrf(),
        }),
    };
    match TEMPLATES
        .get_template("layout.html")
        .and_then(|t| t.render(layout))
    {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => broken("layout.html", &error),
    }
}

/// An error page that says what happened and what to do.
pub fn error(status: StatusCode, operator: Option<&Operator>, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    page(
        status,
        title,
        operator,
        "error.html",
        context! { status => status.as_u16(), title, message },
    )
}

/// The database could not be read or written: nothing changed, try again.
pub fn unavailable(operator: Option<&Operator>) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        operator,
        "The database cannot be reached right now; nothing was changed. Try again in a moment.",
    )
}

/// The answer when a template fails to render (a bug: logged, and a plain 500).
pub fn broken(template: &str, error: &minijinja::Error) -> Response {
    tracing::error!(%error, template, "console page could not be rendered");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the console page could not be rendered",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_masked() {
        assert_eq!(mask_recipient("+15551234567"), "+15•••67");
        assert_eq!(mask_recipient("dana@example.com"), "d•••@example.com");
        assert_eq!(mask_recipient("12345"), "•••");
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(human_age(42), "42s");
        assert_eq!(human_age(7 * 60 + 3), "7m");
        assert_eq!(human_age(3 * 3600 + 5 * 60), "3h 5m");
        assert_eq!(human_age(2 * 86_400 + 4 * 3600), "2d 4h");
    }

    #[test]
    fn every_template_parses() {
        for name in TEMPLATES.templates().map(|(name, _)| name) {
            assert!(TEMPLATES.get_template(name).is_ok(), "{name}");
        }
        assert_eq!(
            TEMPLATES.templates().count(),
            16,
            "a template failed to parse"
        );
    }
}
