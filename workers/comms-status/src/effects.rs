//! What one status event does to one message, decided from the message's current state and
//! nothing else: the state it moves to, the timeline entries, the consent change, the owner task.
//!
//! Both ways of applying events — one transaction per event (`store.rs`) and one transaction per
//! delivery group (`group/`) — write exactly what [`decide`] says, so the rules (forward-only
//! states, failure reasons, which events want an owner) live in one place and the two paths
//! cannot drift apart.

use serde_json::json;
use uuid::Uuid;

use crate::event::{ConsentChange, ProviderEvent, Target, advance};

/// The columns of a message that deciding and writing an event need.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Matched {
    pub id: Uuid,
    pub channel: String,
    pub contact_id: Uuid,
    pub owner: String,
    pub record_type: String,
    pub record_id: Uuid,
    pub delivery_state: String,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    /// When the message was recorded (its enqueue-to-final time starts here).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The trace context the sender stored, which applying a callback continues.
    pub traceparent: Option<String>,
}

/// The `SELECT` list that loads a [`Matched`].
pub const MATCHED_COLUMNS: &str = "id, channel, contact_id, owner, record_type, record_id, delivery_state, provider, provider_message_id, created_at, traceparent";

/// The delivery state an event moves a message to, with what the move records on the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub to: Target,
    /// Set for failures (`undelivered`, `failed`); other moves keep the message's reason.
    pub failure_reason: Option<String>,
    /// Replaces the message's next action (cleared by a move that names none).
    pub next_action: Option<&'static str>,
}

/// One row for `comms.message_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub event_type: &'static str,
    pub reason: String,
    pub recovery_rule: Option<&'static str>,
    pub detail: serde_json::Value,
}

/// One row for `comms.tasks`, for the message's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerTask {
    pub title: String,
    pub next_action: &'static str,
    pub reason: String,
}

/// A consent change to record on the contact's channel and on the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentUpdate {
    pub change: ConsentChange,
    /// `<provider> <status>`, stored as the consent source.
    pub source: String,
}

/// Everything one fresh (not duplicate) event writes, in the order it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Effects {
    pub state_move: Option<Move>,
    /// The status entry, then the consent entry when consent changed.
    pub timeline: Vec<TimelineEntry>,
    pub consent: Option<ConsentUpdate>,
    pub task: Option<OwnerTask>,
}

impl Effects {
    pub fn moved_to(&self) -> Option<Target> {
        self.state_move.as_ref().map(|m| m.to)
    }
}

/// What `event` does to `message` as it is now.
pub fn decide(message: &Matched, event: &ProviderEvent) -> Effects {
    let provider = event.provider.as_str();
    let moved = event
        .effective_target()
        .and_then(|target| advance(&message.delivery_state, target));
    let state_move = moved.map(|to| {
        if to.is_failure() {
            Move {
                to,
                failure_reason: Some(
                    event
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("{provider} {}", event.status)),
                ),
                next_action: event.next_action,
            }
        } else {
            Move {
                to,
                failure_reason: None,
                next_action: None,
            }
        }
    });

    let event_type = match moved {
        Some(target) => target.as_str(),
        None if event.engagement => "engagement",
        None => "provider_status",
    };
    let verb = match moved {
        Some(target) => format!("{} → {}", message.delivery_state, target.as_str()),
        None => format!("no change ({})", message.delivery_state),
    };
    let reason = match &event.reason {
        Some(why) => format!("{provider} {}: {verb}; {why}", event.status),
        None => format!("{provider} {}: {verb}", event.status),
    };
    let recovery_rule = moved
        .filter(|t| t.is_failure())
        .map(|_| "not retried; the owner decides (send again with a new idempotency key)");
    let mut detail = event.detail.clone();
    if let Some(fields) = detail.as_object_mut() {
        fields.insert("from".into(), json!(message.delivery_state));
        fields.insert("to".into(), json!(moved.map(|t| t.as_str())));
    }
    let mut timeline = vec![TimelineEntry {
        event_type,
        reason: reason.clone(),
        recovery_rule,
        detail,
    }];

    let consent = event.consent.map(|change| {
        let source = format!("{provider} {}", event.status);
        timeline.push(consent_entry(message, event, change, &source));
        ConsentUpdate { change, source }
    });

    let wants_owner =
        moved.is_some_and(|t| t.is_failure()) || event.consent.is_some() || event.needs_owner;
    let task = event
        .next_action
        .filter(|_| wants_owner)
        .map(|next_action| OwnerTask {
            title: task_title(event, moved),
            next_action,
            reason,
        });

    Effects {
        state_move,
        timeline,
        consent,
        task,
    }
}

fn consent_entry(
    message: &Matched,
    event: &ProviderEvent,
    change: ConsentChange,
    source: &str,
) -> TimelineEntry {
    let (event_type, recovery) = match change {
        ConsentChange::Suppressed => (
            "suppressed",
            "never sent to on this channel again until the contact gives a working address",
        ),
        ConsentChange::OptedOut => (
            "opted_out",
            "never sent to on this channel again unless the contact opts back in",
        ),
    };
    TimelineEntry {
        event_type,
        reason: format!(
            "{source}: the {} address is now {}",
            message.channel,
            change.as_str()
        ),
        recovery_rule: Some(recovery),
        detail: json!({ "provider_status": event.status, "consent_state": change.as_str() }),
    }
}

fn task_title(event: &ProviderEvent, moved: Option<Target>) -> String {
    match (event.consent, moved) {
        (Some(ConsentChange::OptedOut), _) => "Recipient opted out".to_string(),
        (Some(ConsentChange::Suppressed), _) => "Address suppressed".to_string(),
        (None, Some(target)) if target.is_failure() => format!("Message {}", target.as_str()),
        _ => format!("Provider event: {}", event.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio;

    fn message(state: &str) -> Matched {
        Matched {
            id: Uuid::nil(),
            channel: "sms".into(),
            contact_id: Uuid::nil(),
            owner: "ana".into(),
            record_type: "client".into(),
            record_id: Uuid::nil(),
            delivery_state: state.into(),
            provider: Some("twilio".into()),
            provider_message_id: Some("SM1".into()),
            created_at: chrono::Utc::now(),
            traceparent: None,
        }
    }

    #[test]
    fn a_failure_moves_the_state_and_asks_the_owner() {
        let event = twilio::parse_form(b"MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30003")
            .expect("parses");
        let effects = decide(&message("sent"), &event);
        let moved = effects.state_move.expect("moves");
        assert_eq!(moved.to, Target::Undelivered);
        assert!(moved.failure_reason.is_some_and(|r| r.contains("30003")));
        assert!(moved.next_action.is_some());
        assert_eq!(effects.timeline.len(), 1);
        assert_eq!(effects.timeline[0].event_type, "undelivered");
        assert_eq!(
            effects.timeline[0].reason,
            "twilio undelivered: sent → undelivered; twilio error 30003: unreachable destination handset"
        );
        assert!(
            effects
                .task
                .is_some_and(|t| t.title == "Message undelivered")
        );
    }

    #[test]
    fn a_late_callback_is_recorded_without_a_move() {
        let event = twilio::parse_form(b"MessageSid=SM1&MessageStatus=sent").expect("parses");
        let effects = decide(&message("delivered"), &event);
        assert_eq!(effects.state_move, None);
        assert_eq!(effects.timeline[0].event_type, "provider_status");
        assert_eq!(effects.timeline[0].detail["from"], "delivered");
        assert_eq!(effects.task, None);
    }

    #[test]
    fn an_opt_out_adds_a_consent_entry_after_the_status_entry() {
        let event = twilio::parse_form(b"MessageSid=SM1&MessageStatus=failed&ErrorCode=21610")
            .expect("parses");
        let effects = decide(&message("sent"), &event);
        let types: Vec<_> = effects.timeline.iter().map(|t| t.event_type).collect();
        assert_eq!(types, ["failed", "opted_out"]);
        assert_eq!(
            effects.consent.map(|c| (c.change, c.source)),
            Some((ConsentChange::OptedOut, "twilio failed".to_string()))
        );
        assert!(
            effects
                .task
                .is_some_and(|t| t.title == "Recipient opted out")
        );
    }
}
