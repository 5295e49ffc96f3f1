//! The send request (v1) of a step or a rollback correction: an ordinary request, so the sender
//! applies every rule to it. The template version is pinned (what the owner approved), and the
//! vars every step template may use are `contact_name`, `sequence` and `step`.

use serde_json::json;
use uuid::Uuid;

/// Everything a step's request is built from.
pub struct StepRequest<'a> {
    pub key: &'a str,
    pub channel: &'a str,
    pub kind: &'a str,
    pub contact_id: Uuid,
    pub contact_name: Option<&'a str>,
    pub template: (&'a str, i32),
    pub record: (&'a str, Uuid),
    pub owner: &'a str,
    pub source: &'a str,
    pub sequence: &'a str,
    pub step: i32,
    /// The trigger: `sequence:<name>` for a step (held by that sequence's pause),
    /// `sequence-correction:<name>` for a correction (which that pause does not hold).
    pub trigger: String,
}

impl StepRequest<'_> {
    pub fn body(&self) -> Vec<u8> {
        let request = json!({
            "schema": comms_domain::contract::SEND_REQUEST_V1,
            "idempotency_key": self.key,
            "channel": self.channel,
            "kind": self.kind,
            "recipient": { "contact_id": self.contact_id },
            "template": {
                "name": self.template.0,
                "version": self.template.1,
                "vars": {
                    "contact_name": self.contact_name.unwrap_or_default(),
                    "sequence": self.sequence,
                    "step": self.step,
                },
            },
            "record": { "type": self.record.0, "id": self.record.1 },
            "owner": self.owner,
            "source": self.source,
            "trigger": self.trigger,
        });
        serde_json::to_vec(&request).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_a_valid_send_request() {
        let body = StepRequest {
            key: "seq:00000000-0000-0000-0000-000000000001:2",
            channel: "sms",
            kind: "outreach",
            contact_id: Uuid::nil(),
            contact_name: Some("Dana"),
            template: ("intro", 3),
            record: ("lead", Uuid::nil()),
            owner: "ana",
            source: "crm",
            sequence: "winback",
            step: 2,
            trigger: comms_domain::sequences::trigger("winback"),
        }
        .body();
        let valid = comms_domain::contract::parse_send_request(&body).expect("valid");
        assert_eq!(valid.trigger, "sequence:winback");
        assert_eq!(valid.template.version, Some(3));
    }
}
