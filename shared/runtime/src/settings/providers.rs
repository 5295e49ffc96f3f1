//! The provider sections of [`super::Settings`]: which email transport, and the Twilio,
//! SendGrid and SMTP accounts. Real credentials here switch the fleet from the sandbox to the
//! real services.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTransport {
    /// SendGrid's v3 mail/send API.
    #[default]
    Sendgrid,
    /// Any SMTP relay (`providers.smtp`).
    Smtp,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSettings {
    /// Which transport email leaves through (`COMMS__PROVIDERS__EMAIL`: sendgrid or smtp).
    pub email: EmailTransport,
    pub twilio: TwilioSettings,
    pub sendgrid: SendgridSettings,
    pub smtp: SmtpSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on loopback or inside the cluster only).
    None,
    /// Upgrade with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    #[serde(serialize_with = "super::masked::optional_secret")]
    pub password: Option<SecretString>,
    /// Sender address of SMTP email.
    pub from: String,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            from: "updates@example.com".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioSettings {
    /// `https://api.twilio.com` for the real service; the sandbox by default.
    pub base_url: String,
    pub account_sid: String,
    #[serde(serialize_with = "super::masked::secret")]
    pub auth_token: SecretString,
    /// The sending number (E.164).
    pub from: String,
    /// Where Twilio posts delivery status (the gateway's public URL plus the webhook path).
    pub status_callback: Option<String>,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8025".into(),
            // The sandbox's account (`comms_sandbox::DEFAULT_TWILIO_ACCOUNT_SID`): Twilio's form,
            // `AC` + 32 hex, which the sandbox insists on like Twilio does.
            account_sid: "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
            auth_token: SecretString::from("sandbox-twilio-token"),
            from: "+15005550006".into(),
            status_callback: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendgridSettings {
    /// `https://api.sendgrid.com` for the real service; the sandbox by default.
    pub base_url: String,
    #[serde(serialize_with = "super::masked::secret")]
    pub api_key: SecretString,
    pub from: String,
    pub from_name: Option<String>,
    /// Base64 DER (or PEM) P-256 public key that signs the event webhook.
    pub webhook_public_key: Option<String>,
}

impl Default for SendgridSettings {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8025".into(),
            api_key: SecretString::from("sandbox-sendgrid-key"),
            from: "updates@example.com".into(),
            from_name: None,
            webhook_public_key: None,
        }
    }
}
