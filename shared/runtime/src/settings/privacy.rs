//! Settings of privacy over time (`COMMS__PRIVACY__*`, `COMMS__RETENTION__*`): the key of the
//! erased-address hashes and how long each class of personal content is kept (docs/privacy.md).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySettings {
    /// The HMAC key of the hashes kept for erased addresses that had opted out
    /// (`COMMS__PRIVACY__HASH_KEY`). Set it once per installation and never change it: a changed
    /// key makes every kept hash unmatchable, and an erased opted-out address could be messaged.
    #[serde(serialize_with = "super::masked::secret")]
    pub hash_key: SecretString,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self {
            hash_key: SecretString::from("change-me-privacy-hash-key"),
        }
    }
}

/// How long personal content is kept, in days from when it was recorded (0 keeps it forever),
/// and how the retention job works through it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Rendered subjects and bodies, recipient addresses and request variables of finished SMS
    /// and email messages (`COMMS__RETENTION__BODIES_DAYS`).
    pub bodies_days: u32,
    /// Raw provider payloads in `internal.provider_payloads` (`COMMS__RETENTION__RAW_PAYLOADS_DAYS`).
    pub raw_payloads_days: u32,
    /// Bodies and addresses of inbound replies (`COMMS__RETENTION__INBOUND_BODIES_DAYS`).
    pub inbound_bodies_days: u32,
    /// Rejected input in `internal.rejected_input` (`COMMS__RETENTION__REJECTED_INPUT_DAYS`).
    pub rejected_input_days: u32,
    /// Applied delivery callbacks in `comms.delivery_callbacks`
    /// (`COMMS__RETENTION__DELIVERY_CALLBACKS_DAYS`).
    pub delivery_callbacks_days: u32,
    /// Rows changed per statement: each batch is one short transaction.
    pub batch_size: u32,
    /// How often `comms-events` runs the job (`0s` turns the schedule off; `commsctl retention run`
    /// still works).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            bodies_days: 90,
            raw_payloads_days: 30,
            inbound_bodies_days: 90,
            rejected_input_days: 30,
            delivery_callbacks_days: 90,
            batch_size: 500,
            interval: Duration::from_secs(3600),
        }
    }
}
