//! The provider sections of [`super::Settings`]: which providers each channel uses, in order of
//! preference (failover, docs/reliability.md#provider-failover), and the Twilio, SendGrid and SMTP
//! accounts. Real credentials here switch the fleet from the sandbox to the real services.

use std::time::Duration;

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

/// The provider names an order may list, per channel.
pub const SMS_PROVIDERS: [&str; 2] = ["twilio", "twilio_secondary"];
pub const EMAIL_PROVIDERS: [&str; 2] = ["sendgrid", "smtp"];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSettings {
    /// Which transport email leaves through (`COMMS__PROVIDERS__EMAIL`: sendgrid or smtp) when
    /// `email_order` is empty: the single-provider setting of before failover.
    pub email: EmailTransport,
    /// SMS providers in order of preference, comma-separated (`COMMS__PROVIDERS__SMS_ORDER`):
    /// `twilio`, `twilio_secondary`. The first takes the traffic; the next only while the ones
    /// before it are failing.
    pub sms_order: String,
    /// Email providers in order of preference, comma-separated (`COMMS__PROVIDERS__EMAIL_ORDER`):
    /// `sendgrid`, `smtp`. Empty: `email` alone.
    pub email_order: String,
    /// How long a provider that failed is left alone before one message probes it again
    /// (`COMMS__PROVIDERS__FAILBACK_AFTER`); the probe's success brings the traffic back.
    #[serde(with = "humantime_serde")]
    pub failback_after: Duration,
    pub twilio: TwilioSettings,
    /// A second Twilio account or Messaging Service (`COMMS__PROVIDERS__TWILIO_SECONDARY__*`),
    /// used when `sms_order` names `twilio_secondary`.
    pub twilio_secondary: Option<TwilioSettings>,
    pub sendgrid: SendgridSettings,
    pub smtp: SmtpSettings,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            email: EmailTransport::default(),
            sms_order: "twilio".into(),
            email_order: String::new(),
            failback_after: Duration::from_secs(30),
            twilio: TwilioSettings::default(),
            twilio_secondary: None,
            sendgrid: SendgridSettings::default(),
            smtp: SmtpSettings::default(),
        }
    }
}

impl ProviderSettings {
    /// The SMS providers in order, as validated at start.
    pub fn sms_providers(&self) -> Result<Vec<&'static str>, String> {
        parse_order("providers.sms_order", &self.sms_order, &SMS_PROVIDERS)
    }

    /// The email providers in order: `email_order`, or `email` alone when it is empty.
    pub fn email_providers(&self) -> Result<Vec<&'static str>, String> {
        if self.email_order.trim().is_empty() {
            return Ok(vec![match self.email {
                EmailTransport::Sendgrid => "sendgrid",
                EmailTransport::Smtp => "smtp",
            }]);
        }
        parse_order("providers.email_order", &self.email_order, &EMAIL_PROVIDERS)
    }

    /// The Twilio account a provider name of the SMS order stands for.
    pub fn twilio_account(&self, name: &str) -> Option<&TwilioSettings> {
        match name {
            "twilio" => Some(&self.twilio),
            "twilio_secondary" => self.twilio_secondary.as_ref(),
            _ => None,
        }
    }

    /// Every configured Twilio account (the gateway verifies callbacks with each one's token).
    pub fn twilio_accounts(&self) -> impl Iterator<Item = &TwilioSettings> {
        std::iter::once(&self.twilio).chain(self.twilio_secondary.as_ref())
    }

    /// Checks the orders and the accounts they name; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let sms = self.sms_providers()?;
        self.email_providers()?;
        if sms.contains(&"twilio_secondary") && self.twilio_secondary.is_none() {
            return Err("key `providers.sms_order`: names twilio_secondary, but \
                 providers.twilio_secondary is not configured (COMMS__PROVIDERS__TWILIO_SECONDARY__ACCOUNT_SID, …)"
                .into());
        }
        if self.failback_after.is_zero() {
            return Err("key `providers.failback_after`: must be longer than zero".into());
        }
        // The primary account is checked as before failover existed (its base URL, by
        // `Settings::validate`); a second account is checked whole, since it only matters the
        // day the first one fails.
        if let Some(secondary) = &self.twilio_secondary {
            secondary.validate("providers.twilio_secondary")?;
        }
        Ok(())
    }
}

/// A comma-separated order of provider names out of `known`, at least one, none twice.
fn parse_order(
    key: &str,
    value: &str,
    known: &[&'static str],
) -> Result<Vec<&'static str>, String> {
    let mut order = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(known) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) else {
            return Err(format!(
                "key `{key}`: unknown provider `{name}` (expected a comma-separated list of {})",
                known.join(", ")
            ));
        };
        if order.contains(known) {
            return Err(format!("key `{key}`: `{name}` is listed twice"));
        }
        order.push(*known);
    }
    if order.is_empty() {
        return Err(format!(
            "key `{key}`: must name at least one of {}",
            known.join(", ")
        ));
    }
    Ok(order)
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
    /// The sending number (E.164); may be empty when `messaging_service_sid` is set.
    pub from: String,
    /// A Messaging Service (`MG…`) to send through instead of `from` (Twilio picks the number).
    pub messaging_service_sid: Option<String>,
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
            messaging_service_sid: None,
            status_callback: None,
        }
    }
}

impl TwilioSettings {
    fn validate(&self, key: &str) -> Result<(), String> {
        let sid = &self.account_sid;
        if !(sid.len() == 34
            && sid.starts_with("AC")
            && sid[2..].chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(format!(
                "key `{key}.account_sid`: must be AC followed by 32 hex digits"
            ));
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(format!(
                "key `{key}.base_url`: must be an http:// or https:// URL"
            ));
        }
        let service = self
            .messaging_service_sid
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        if self.from.trim().is_empty() && service.is_none() {
            return Err(format!(
                "key `{key}.from`: a sending number or a messaging_service_sid is required"
            ));
        }
        if service.is_some_and(|s| !s.starts_with("MG")) {
            return Err(format!(
                "key `{key}.messaging_service_sid`: must start with MG"
            ));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::settings::Settings;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(&vars).map_err(|e| e.to_string())
    }

    const SECONDARY: [(&str, &str); 3] = [
        (
            "COMMS__PROVIDERS__TWILIO_SECONDARY__ACCOUNT_SID",
            "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        ),
        (
            "COMMS__PROVIDERS__TWILIO_SECONDARY__AUTH_TOKEN",
            "second-token",
        ),
        ("COMMS__PROVIDERS__TWILIO_SECONDARY__FROM", "+15005550007"),
    ];

    #[test]
    fn one_provider_per_channel_unless_told_otherwise() {
        let settings = load(&[]).expect("defaults");
        assert_eq!(settings.providers.sms_providers(), Ok(vec!["twilio"]));
        assert_eq!(settings.providers.email_providers(), Ok(vec!["sendgrid"]));
        // The single-provider setting of before still chooses the email transport.
        let smtp = load(&[("COMMS__PROVIDERS__EMAIL", "smtp")]).expect("loads");
        assert_eq!(smtp.providers.email_providers(), Ok(vec!["smtp"]));
    }

    #[test]
    fn orders_are_comma_separated_lists() {
        let mut pairs = SECONDARY.to_vec();
        pairs.push(("COMMS__PROVIDERS__SMS_ORDER", "twilio, twilio_secondary"));
        pairs.push(("COMMS__PROVIDERS__EMAIL_ORDER", "sendgrid,smtp"));
        pairs.push(("COMMS__PROVIDERS__FAILBACK_AFTER", "45s"));
        let settings = load(&pairs).expect("loads");
        assert_eq!(
            settings.providers.sms_providers(),
            Ok(vec!["twilio", "twilio_secondary"])
        );
        assert_eq!(
            settings.providers.email_providers(),
            Ok(vec!["sendgrid", "smtp"])
        );
        assert_eq!(settings.providers.failback_after.as_secs(), 45);
        let accounts: Vec<&str> = settings
            .providers
            .twilio_accounts()
            .map(|a| a.account_sid.as_str())
            .collect();
        assert_eq!(accounts.len(), 2);
        assert!(!format!("{settings:?}").contains("second-token"));
    }

    #[test]
    fn a_wrong_order_is_refused_at_start_by_name() {
        for (pairs, expected) in [
            (
                vec![("COMMS__PROVIDERS__SMS_ORDER", "twilio,sendgrid")],
                "unknown provider `sendgrid`",
            ),
            (
                vec![("COMMS__PROVIDERS__SMS_ORDER", "twilio,twilio")],
                "listed twice",
            ),
            (vec![("COMMS__PROVIDERS__SMS_ORDER", " , ")], "at least one"),
            (
                vec![("COMMS__PROVIDERS__SMS_ORDER", "twilio,twilio_secondary")],
                "providers.twilio_secondary is not configured",
            ),
            (
                vec![("COMMS__PROVIDERS__EMAIL_ORDER", "smtp,mailgun")],
                "providers.email_order",
            ),
            (
                vec![("COMMS__PROVIDERS__FAILBACK_AFTER", "0s")],
                "providers.failback_after",
            ),
        ] {
            let err = load(&pairs).expect_err("must fail");
            assert!(err.contains(expected), "{err}");
        }
        let mut bad_sid = SECONDARY.to_vec();
        bad_sid[0].1 = "AC123";
        let err = load(&bad_sid).expect_err("must fail");
        assert!(
            err.contains("providers.twilio_secondary.account_sid"),
            "{err}"
        );
    }

    #[test]
    fn a_messaging_service_may_stand_in_for_the_number() {
        let mut pairs = SECONDARY.to_vec();
        pairs[2] = ("COMMS__PROVIDERS__TWILIO_SECONDARY__FROM", "");
        let err = load(&pairs).expect_err("neither a number nor a service");
        assert!(err.contains("providers.twilio_secondary.from"), "{err}");
        pairs.push((
            "COMMS__PROVIDERS__TWILIO_SECONDARY__MESSAGING_SERVICE_SID",
            "MGcccccccccccccccccccccccccccccccc",
        ));
        let settings = load(&pairs).expect("a service alone is enough");
        let secondary = settings.providers.twilio_secondary.expect("configured");
        assert!(secondary.messaging_service_sid.is_some());
    }
}
