//! Typed settings for every process, loaded once at start.
//!
//! Layers, later wins: defaults written in code (`sections.rs`), an optional TOML file named by
//! `COMMS_CONFIG`, then environment variables `COMMS__<SECTION>__<KEY>` (for example
//! `COMMS__DATABASE__URL`). Unknown keys are rejected so a typo fails loudly at start instead of
//! silently running with a default; secrets are wrapped so they never reach a log line.
//! Nothing downstream reads the environment: workers receive a validated [`Settings`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

mod digest;
mod events;
mod incidents;
mod masked;
mod privacy;
mod providers;
mod sections;
mod sequences;

pub use digest::DigestSettings;
pub use events::EventsSettings;
pub use incidents::IncidentSettings;
pub use masked::{MASK, mask_url};
pub use privacy::{PrivacySettings, RetentionSettings};
pub use sequences::SequencesSettings;

pub use providers::*;
pub use sections::*;

/// Why settings could not be loaded. The message always names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration file {path}: {source}")]
    File {
        path: String,
        source: config::ConfigError,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Everything a comms-fleet process can be configured with.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub consumer: ConsumerSettings,
    pub rate: RateSettings,
    pub providers: ProviderSettings,
    pub sender: SenderSettings,
    pub pause: PauseSettings,
    pub gateway: GatewaySettings,
    pub status: StatusSettings,
    pub approvals: ApprovalSettings,
    pub replies: RepliesSettings,
    pub events: EventsSettings,
    pub incidents: IncidentSettings,
    pub digest: DigestSettings,
    pub privacy: PrivacySettings,
    pub retention: RetentionSettings,
    pub sequences: SequencesSettings,
}

impl Settings {
    /// Loads settings from the process environment (`COMMS_CONFIG` and `COMMS__*`).
    pub fn load() -> Result<Self, SettingsError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(&vars)
    }

    /// Loads settings from an explicit variable map, so tests never touch the real environment.
    pub fn load_from(vars: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(path) = vars.get("COMMS_CONFIG").filter(|p| !p.is_empty()) {
            builder = builder.add_source(config::File::new(path, config::FileFormat::Toml));
        }
        let overrides: config::Map<String, String> = vars
            .iter()
            .filter(|(k, _)| k.starts_with("COMMS__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("COMMS")
                .separator("__")
                .prefix_separator("__")
                .source(Some(overrides)),
        );
        let built = builder.build().map_err(|source| SettingsError::File {
            path: vars.get("COMMS_CONFIG").cloned().unwrap_or_default(),
            source,
        })?;
        let settings: Settings = serde_path_to_error::deserialize(built).map_err(|err| {
            SettingsError::Invalid(format!("key `{}`: {}", err.path(), err.inner()))
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        use secrecy::ExposeSecret;
        let invalid = |key: &str, problem: &str| {
            Err(SettingsError::Invalid(format!("key `{key}`: {problem}")))
        };
        let db = self.database.url.expose_secret();
        if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            return invalid(
                "database.url",
                "must start with postgres:// or postgresql://",
            );
        }
        let amqp = self.amqp.url.expose_secret();
        if !(amqp.starts_with("amqp://") || amqp.starts_with("amqps://")) {
            return invalid("amqp.url", "must start with amqp:// or amqps://");
        }
        if self.amqp.frame_max < 4096 {
            return invalid("amqp.frame_max", "must be at least 4096 (the AMQP minimum)");
        }
        if self.consumer.prefetch == 0 {
            return invalid("consumer.prefetch", "must be at least 1");
        }
        if self.consumer.concurrency == 0 {
            return invalid("consumer.concurrency", "must be at least 1");
        }
        if self.consumer.group_max == 0 {
            return invalid("consumer.group_max", "must be at least 1");
        }
        if self.consumer.groups_in_flight == 0 {
            return invalid("consumer.groups_in_flight", "must be at least 1");
        }
        let ratio = self.status.partial_loss_ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return invalid("status.partial_loss_ratio", "must be above 0 and at most 1");
        }
        if self.status.partial_loss_min < 1 {
            return invalid("status.partial_loss_min", "must be at least 1");
        }
        if self.rate.max_replicas == 0 {
            return invalid("rate.max_replicas", "must be at least 1");
        }
        if self.sender.max_attempts == 0 {
            return invalid("sender.max_attempts", "must be at least 1");
        }
        for (key, value) in [
            ("sender.quiet_hours_start", &self.sender.quiet_hours_start),
            ("sender.quiet_hours_end", &self.sender.quiet_hours_end),
        ] {
            if chrono::NaiveTime::parse_from_str(value, "%H:%M").is_err() {
                return invalid(key, "must be a time of day as HH:MM");
            }
        }
        if self
            .sender
            .default_time_zone
            .parse::<chrono_tz::Tz>()
            .is_err()
        {
            return invalid("sender.default_time_zone", "must be an IANA time zone");
        }
        for (key, url) in [
            ("providers.twilio.base_url", &self.providers.twilio.base_url),
            (
                "providers.sendgrid.base_url",
                &self.providers.sendgrid.base_url,
            ),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid(key, "must be an http:// or https:// URL");
            }
        }
        self.providers.validate().map_err(SettingsError::Invalid)?;
        self.digest.validate().map_err(SettingsError::Invalid)?;
        self.incidents.validate().map_err(SettingsError::Invalid)?;
        if self.approvals.expire_after.is_zero() {
            return invalid("approvals.expire_after", "must be longer than zero");
        }
        if self.approvals.check_interval.is_zero() {
            return invalid("approvals.check_interval", "must be longer than zero");
        }
        if self.events.relay_batch == 0 {
            return invalid("events.relay_batch", "must be at least 1");
        }
        if self.sequences.batch == 0 {
            return invalid("sequences.batch", "must be at least 1");
        }
        if self.sequences.interval.is_zero() {
            return invalid("sequences.interval", "must be longer than zero");
        }
        if self.events.webhook_max_attempts == 0 {
            return invalid("events.webhook_max_attempts", "must be at least 1");
        }
        if self.retention.batch_size == 0 {
            return invalid("retention.batch_size", "must be at least 1");
        }
        if self.privacy.hash_key.expose_secret().len() < 16 {
            return invalid("privacy.hash_key", "must be at least 16 characters");
        }
        if self.pause.poll_interval.is_zero() {
            return invalid("pause.poll_interval", "must be longer than zero");
        }
        if self.gateway.max_body_bytes < 1024 {
            return invalid(
                "gateway.max_body_bytes",
                "must be at least 1024 (a send request alone needs more)",
            );
        }
        if self.pause.poll_interval >= self.pause.max_staleness {
            return invalid(
                "pause.poll_interval",
                "must be shorter than pause.max_staleness",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(&vars)
    }

    #[test]
    fn defaults_point_at_the_local_services() {
        use secrecy::ExposeSecret;
        let settings = load(&[]).expect("defaults load");
        assert_eq!(
            settings.database.url.expose_secret(),
            "postgres://postgres@127.0.0.1:5432/comms"
        );
        assert_eq!(
            settings.amqp.url.expose_secret(),
            "amqp://guest:guest@127.0.0.1:5672/%2f"
        );
    }

    #[test]
    fn a_digest_schedule_or_incident_chunk_the_workers_refuse_is_refused_at_load() {
        for (key, value, named) in [
            ("COMMS__DIGEST__SCHEDULE", "not a cron", "digest.schedule"),
            ("COMMS__DIGEST__SCHEDULE", "61 * * * *", "digest.schedule"),
            ("COMMS__INCIDENTS__CHUNK_SIZE", "0", "incidents.chunk_size"),
            ("COMMS__INCIDENTS__CHUNK_SIZE", "-5", "incidents.chunk_size"),
        ] {
            let err = load(&[(key, value)]).expect_err(value);
            assert!(err.to_string().contains(named), "{key}={value}: {err}");
        }
        let scheduled = load(&[("COMMS__DIGEST__SCHEDULE", "0 6 1 * *")]).expect("a cron");
        assert_eq!(scheduled.digest.schedule, "0 6 1 * *");
    }

    #[test]
    fn a_zero_pause_poll_or_a_body_limit_too_small_for_any_request_is_refused() {
        for (key, value, named) in [
            ("COMMS__PAUSE__POLL_INTERVAL", "0s", "pause.poll_interval"),
            (
                "COMMS__GATEWAY__MAX_BODY_BYTES",
                "0",
                "gateway.max_body_bytes",
            ),
        ] {
            let err = load(&[(key, value)]).expect_err(value);
            assert!(err.to_string().contains(named), "{key}={value}: {err}");
        }
    }

    #[test]
    fn environment_overrides_defaults() {
        let settings = load(&[("COMMS__CONSUMER__PREFETCH", "7")]).expect("loads");
        assert_eq!(settings.consumer.prefetch, 7);
    }

    #[test]
    fn the_group_size_is_group_max_and_batch_max_still_works() {
        assert_eq!(load(&[]).expect("defaults").consumer.group_max, 32);
        let new = load(&[("COMMS__CONSUMER__GROUP_MAX", "16")]).expect("loads");
        assert_eq!(new.consumer.group_max, 16);
        // The deprecated name still sets it.
        let old = load(&[("COMMS__CONSUMER__BATCH_MAX", "8")]).expect("loads");
        assert_eq!(old.consumer.group_max, 8);
        let err = load(&[("COMMS__CONSUMER__BATCH_MAX", "0")]).expect_err("must fail");
        assert!(err.to_string().contains("consumer.group_max"), "{err}");
        // Both at once is ambiguous: refused, naming the setting.
        let both = load(&[
            ("COMMS__CONSUMER__GROUP_MAX", "16"),
            ("COMMS__CONSUMER__BATCH_MAX", "8"),
        ])
        .expect_err("must fail");
        assert!(both.to_string().contains("group_max"), "{both}");
    }

    #[test]
    fn a_wrong_value_names_its_key() {
        let err = load(&[("COMMS__CONSUMER__PREFETCH", "lots")]).expect_err("must fail");
        assert!(err.to_string().contains("consumer.prefetch"), "{err}");
        let err = load(&[("COMMS__DATABASE__URL", "mysql://x")]).expect_err("must fail");
        assert!(err.to_string().contains("database.url"), "{err}");
        let err = load(&[("COMMS__HTTP__LISTEN", "nowhere")]).expect_err("must fail");
        assert!(err.to_string().contains("http.listen"), "{err}");
    }

    #[test]
    fn the_partial_loss_threshold_is_a_share_and_a_count() {
        let settings = load(&[("COMMS__STATUS__PARTIAL_LOSS_RATIO", "0.05")]).expect("loads");
        assert!((settings.status.partial_loss_ratio - 0.05).abs() < f64::EPSILON);
        for (key, value) in [
            ("COMMS__STATUS__PARTIAL_LOSS_RATIO", "0"),
            ("COMMS__STATUS__PARTIAL_LOSS_RATIO", "1.5"),
            ("COMMS__STATUS__PARTIAL_LOSS_MIN", "0"),
        ] {
            let err = load(&[(key, value)]).expect_err("must fail");
            assert!(err.to_string().contains("status.partial_loss"), "{err}");
        }
    }

    #[test]
    fn an_unknown_key_is_rejected_by_name() {
        let err = load(&[("COMMS__DATABASE__ULR", "postgres://x")]).expect_err("must fail");
        assert!(err.to_string().contains("ulr"), "{err}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let settings =
            load(&[("COMMS__DATABASE__URL", "postgres://u:hunter2@db/comms")]).expect("loads");
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn approvals_expire_after_three_days_unless_configured() {
        let settings = load(&[]).expect("defaults load");
        assert_eq!(
            settings.approvals.expire_after,
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(settings.approvals.portal_max_chars, 600);
        let settings = load(&[("COMMS__APPROVALS__EXPIRE_AFTER", "24h")]).expect("loads");
        assert_eq!(
            settings.approvals.expire_after,
            Duration::from_secs(24 * 3600)
        );
        let err = load(&[("COMMS__APPROVALS__EXPIRE_AFTER", "0s")]).expect_err("must fail");
        assert!(err.to_string().contains("approvals.expire_after"), "{err}");
    }

    #[test]
    fn a_config_file_is_read_and_the_environment_wins() {
        let dir = std::env::temp_dir().join(format!("comms-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("comms.toml");
        std::fs::write(&path, "[consumer]\nprefetch = 3\nconcurrency = 2\n").expect("write");
        let file = path.to_string_lossy().to_string();
        let settings = load(&[
            ("COMMS_CONFIG", file.as_str()),
            ("COMMS__CONSUMER__CONCURRENCY", "5"),
        ])
        .expect("loads");
        assert_eq!(settings.consumer.prefetch, 3);
        assert_eq!(settings.consumer.concurrency, 5);
    }
}
