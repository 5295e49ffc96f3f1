//! Email over any SMTP relay (lettre), the alternative to SendGrid's API
//! (`COMMS__PROVIDERS__EMAIL=smtp`). The same sender display name, threading and unsubscribe
//! headers are set as on the SendGrid path, and the relay's answer is classified the same way: 4xx
//! and connection failures are retried, 5xx refusals fail at once with the relay's reason. Unlike
//! SendGrid, nobody completes the MIME headers for us, so the message declares `MIME-Version: 1.0`
//! itself (RFC 2045 §4): without it the UTF-8 charset and quoted-printable encoding it declares
//! need not be honoured.

use comms_runtime::settings::{Settings, SmtpSettings, SmtpTls};
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue, MIME_VERSION_1_0};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::{Dispatch, Health, Outbound, sendgrid};

/// Builds the relay connection from settings (it connects lazily, per send, from a pool).
pub fn transport(
    settings: &SmtpSettings,
    timeout: std::time::Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let mut builder = match settings.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host),
        SmtpTls::Starttls | SmtpTls::Tls => {
            let params = TlsParameters::new(settings.host.clone())
                .map_err(|e| format!("providers.smtp.host: {e}"))?;
            let tls = if settings.tls == SmtpTls::Tls {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            };
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host).tls(tls)
        }
    };
    builder = builder.port(settings.port).timeout(Some(timeout));
    if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_string(),
        ));
    }
    Ok(builder.build())
}

macro_rules! raw_header {
    ($name:ident, $text:literal) => {
        #[derive(Clone)]
        struct $name(String);
        impl Header for $name {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($text)
            }
            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok(Self(s.to_string()))
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

raw_header!(ListUnsubscribe, "List-Unsubscribe");
raw_header!(ListUnsubscribePost, "List-Unsubscribe-Post");

/// Sends one mail. A relay that answers (accepting or refusing this message for good) is up; a
/// transient refusal or a failed connection is failover-class; a timeout (the relay may have
/// queued the mail) only counts toward the breaker.
pub async fn send(
    relay: &AsyncSmtpTransport<Tokio1Executor>,
    all: &Settings,
    message: &Outbound,
) -> (Dispatch, Health) {
    let (headers, reply_to) = sendgrid::reply_headers(all, message);
    let text = |key: &str| {
        headers
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let mailbox = |address: &str| address.parse::<Mailbox>();
    // The display name SendGrid mail carries (`providers.sendgrid.from_name`), so the recipient
    // sees one sender whichever transport carried the mail.
    let display_name = &all.providers.sendgrid.from_name;
    let from = mailbox(&all.providers.smtp.from)
        .map(|m| Mailbox::new(display_name.clone().or(m.name), m.email));
    let (from, to, reply) = match (from, mailbox(&message.to), mailbox(&reply_to)) {
        (Ok(from), Ok(to), Ok(reply)) => (from, to, reply),
        _ => {
            let refused = Dispatch::Permanent {
                reason: "smtp: an address could not be used".into(),
                opted_out: false,
            };
            return (refused, Health::Up);
        }
    };
    let message_id = text("Message-ID");
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .reply_to(reply)
        .subject(message.subject.clone().unwrap_or_default())
        .message_id(message_id.clone())
        .header(MIME_VERSION_1_0)
        .header(ContentType::TEXT_PLAIN);
    if let (Some(link), Some(post)) = (text("List-Unsubscribe"), text("List-Unsubscribe-Post")) {
        builder = builder
            .header(ListUnsubscribe(link))
            .header(ListUnsubscribePost(post));
    }
    let email = match builder.body(message.body.clone()) {
        Ok(email) => email,
        Err(e) => {
            let refused = Dispatch::Permanent {
                reason: format!("smtp: message could not be built: {e}"),
                opted_out: false,
            };
            return (refused, Health::Up);
        }
    };
    match relay.send(email).await {
        Ok(_) => (
            Dispatch::Sent {
                provider: "smtp",
                provider_message_id: message_id
                    .unwrap_or_else(|| format!("<comms.{}>", message.message_id)),
            },
            Health::Up,
        ),
        Err(e) if e.is_permanent() => (
            Dispatch::Permanent {
                reason: format!("smtp relay refused: {e}"),
                opted_out: false,
            },
            Health::Up,
        ),
        Err(e) => (
            Dispatch::Transient {
                reason: format!("smtp relay: {e}"),
                retry_after: None,
                // After DATA the relay may have queued it before the connection failed.
                maybe_sent: e.is_timeout(),
            },
            if e.is_timeout() {
                Health::Degraded
            } else {
                Health::Failing
            },
        ),
    }
}
