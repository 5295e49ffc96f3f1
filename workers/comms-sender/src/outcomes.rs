//! Each way a send can end (for now or for good) as a state change, an event, an owner task
//! where a person must act, and the [`Outcome`] that tells the broker what to do with the request.

use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_domain::contract::Channel;
use comms_domain::messages::DeliveryState;
use comms_runtime::runtime::Outcome;
use serde_json::json;

use crate::providers::Dispatch;
use crate::rules::Refusal;
use crate::rules::answer::Answer;
use crate::sender::SendHandler;
use crate::store::{self, DISPATCHABLE, Event, Message, Task, Transition};
use comms_domain::pause::ActivePause;

fn task(title: String, next_action: &str, hours: i64) -> Task {
    Task {
        title,
        next_action: next_action.to_string(),
        due_in: chrono::Duration::hours(hours),
    }
}

/// A preflight refusal: the message is `blocked` for good, and the owner is told why.
pub async fn block(
    handler: &SendHandler,
    message: &Message,
    refusal: Refusal,
) -> Result<Outcome, sqlx::Error> {
    tracing::info!(message.id = %message.id, reason = refusal.code, "message blocked by preflight");
    let transition = Transition {
        failure_reason: Some(refusal.code.to_string()),
        next_action: Some(refusal.next_action.to_string()),
        task: Some(task(
            format!("Message not sent: {}", refusal.code),
            refusal.next_action,
            24,
        )),
        ..Transition::new(
            DISPATCHABLE,
            DeliveryState::Blocked,
            Event::new("blocked", format!("{}: {}", refusal.code, refusal.detail))
                .recovery("not sent; a corrected request with a new idempotency key sends it"),
        )
    };
    store::transition(&handler.pool, message, transition).await?;
    Ok(Outcome::Ack)
}

/// Portal-visible wording that is not portal-safe: `blocked` as `portal_unsafe`, every problem
/// named in the event and in the owner's task (never the offending text itself).
pub async fn portal_unsafe(
    handler: &SendHandler,
    message: &Message,
    problems: &[crate::portal_safe::Problem],
) -> Result<Outcome, sqlx::Error> {
    const NEXT: &str =
        "rewrite the wording (template or variables) and send it again with a new idempotency key";
    let codes: Vec<&str> = problems.iter().map(|p| p.code).collect();
    tracing::info!(message.id = %message.id, problems = ?codes, "portal wording refused");
    let listed = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let transition = Transition {
        failure_reason: Some("portal_unsafe".into()),
        next_action: Some(NEXT.to_string()),
        task: Some(task("Portal wording is not portal-safe".into(), NEXT, 24)),
        ..Transition::new(
            DISPATCHABLE,
            DeliveryState::Blocked,
            Event::new("blocked", format!("portal_unsafe: {listed}"))
                .recovery("not sent and not offered for approval; a rewritten request with a new idempotency key is checked again")
                .detail(json!({ "problems": problems })),
        )
    };
    store::transition(&handler.pool, message, transition).await?;
    Ok(Outcome::Ack)
}

/// The message needs an owner's decision first; the approval workflow sends it on afterwards.
pub async fn await_approval(
    handler: &SendHandler,
    message: &Message,
    reason: &'static str,
    content_hash: &str,
) -> Result<Outcome, sqlx::Error> {
    const WAITING_FROM: &[DeliveryState] = &[
        DeliveryState::Received,
        DeliveryState::Deferred,
        DeliveryState::Held,
        DeliveryState::Retrying,
    ];
    let next_action = if reason == "ai_draft_needs_review" {
        "review the AI draft and mark it safe, or reject it"
    } else {
        "approve or reject the message (commsctl approvals)"
    };
    let transition = Transition {
        next_action: Some(next_action.to_string()),
        task: Some(task(
            "Message waits for your approval".into(),
            next_action,
            24,
        )),
        ..Transition::new(
            WAITING_FROM,
            DeliveryState::AwaitingApproval,
            Event::new("approval_requested", reason)
                .recovery(
                    "dispatched through the sender once approved; never without an approval record",
                )
                .detail(json!({ "content_hash": content_hash })),
        )
    };
    store::transition(&handler.pool, message, transition).await?;
    Ok(Outcome::Ack)
}

/// Not yet (quiet hours, `send_after`): the broker brings the request back later.
pub async fn defer(
    handler: &SendHandler,
    message: &Message,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
    reason: &'static str,
) -> Result<Outcome, sqlx::Error> {
    let already = message.delivery_state == DeliveryState::Deferred.as_str()
        && message.send_after == Some(until);
    if !already {
        let transition = Transition {
            send_after: Some(until),
            ..Transition::new(
                DISPATCHABLE,
                DeliveryState::Deferred,
                Event::new(
                    "deferred",
                    format!("{reason}: waits until {}", until.to_rfc3339()),
                )
                .recovery("the broker brings it back; it is checked again then, never dropped"),
            )
        };
        store::transition(&handler.pool, message, transition).await?;
    }
    let wait = (until - now).to_std().unwrap_or(Duration::from_secs(1));
    Ok(Outcome::Defer {
        after: wait,
        reason: format!("{reason} until {}", until.to_rfc3339()),
    })
}

/// Caught by the pause switch after the claim, before the provider call: held, and the claim's
/// attempt is given back (nothing reached a provider). The claim marked the call as started, so
/// the hold is kept through a database hiccup as an answer is ([`crate::answer_kept`]).
pub async fn hold_claimed(
    handler: &SendHandler,
    message: &Message,
    pause: &ActivePause,
) -> Result<Outcome, sqlx::Error> {
    crate::answer_kept::record(&handler.settings, message.id, || {
        hold_from(handler, message, pause, &[DeliveryState::Sending], -1)
    })
    .await
}

/// Caught by the pause switch: held durably, not sent, not counted as an attempt.
pub async fn hold(
    handler: &SendHandler,
    message: &Message,
    pause: &ActivePause,
) -> Result<Outcome, sqlx::Error> {
    const HOLD_FROM: &[DeliveryState] = &[
        DeliveryState::Received,
        DeliveryState::Deferred,
        DeliveryState::AwaitingApproval,
        DeliveryState::Retrying,
    ];
    hold_from(handler, message, pause, HOLD_FROM, 0).await
}

async fn hold_from(
    handler: &SendHandler,
    message: &Message,
    pause: &ActivePause,
    from: &[DeliveryState],
    attempt_delta: i32,
) -> Result<Outcome, sqlx::Error> {
    let scope = pause.scope.to_string();
    let transition = Transition {
        held_by_pause: Some(pause.id),
        attempt_delta,
        ..Transition::new(
            from,
            DeliveryState::Held,
            Event::new("held", format!("paused ({scope}) by {}: {}", pause.actor, pause.reason))
                .recovery("released in creation order through preflight and rate limits when the pause ends")
                .detail(json!({ "pause_id": pause.id, "scope": pause.scope.name(), "scope_value": pause.scope.value(), "automatic": pause.automatic })),
        )
    };
    store::transition(&handler.pool, message, transition).await?;
    Ok(Outcome::Ack)
}

/// Records what provider `via` (its name in the channel's order) said, as
/// [`crate::rules::Book::answer`] reads it. A retry that may follow a copy at the provider names
/// `via` in its event: the message is pinned there ([`crate::store::pinned_provider`]). Tried
/// again through a database hiccup: the answer is known only here ([`crate::answer_kept`]).
pub async fn record_dispatch(
    handler: &SendHandler,
    message: &Message,
    attempt: i32,
    dispatch: Dispatch,
    via: &str,
) -> Result<Outcome, sqlx::Error> {
    crate::answer_kept::record(&handler.settings, message.id, || {
        record_answer(handler, message, attempt, dispatch.clone(), via)
    })
    .await
}

/// One try of [`record_dispatch`].
async fn record_answer(
    handler: &SendHandler,
    message: &Message,
    attempt: i32,
    dispatch: Dispatch,
    via: &str,
) -> Result<Outcome, sqlx::Error> {
    const SENDING: &[DeliveryState] = &[DeliveryState::Sending];
    match handler.book().answer(dispatch, attempt) {
        Answer::Sent {
            provider,
            provider_message_id,
        } => {
            tracing::info!(message.id = %message.id, provider = via, attempt, "sent");
            let text = if via == provider {
                format!("accepted by {provider}")
            } else {
                format!("accepted by {provider} ({via})")
            };
            let transition = Transition {
                provider: Some(provider),
                provider_message_id: Some(provider_message_id.clone()),
                ..Transition::new(
                    SENDING,
                    DeliveryState::Sent,
                    Event::new("sent", text).detail(
                        json!({ "provider_message_id": provider_message_id, "attempt": attempt, "provider": via }),
                    ),
                )
            };
            store::transition(&handler.pool, message, transition).await?;
            Ok(Outcome::Ack)
        }
        Answer::Retry {
            reason,
            retry_after,
            maybe_sent,
            max,
        } => {
            tracing::warn!(message.id = %message.id, attempt, %reason, maybe_sent, "provider failed; retrying");
            let mut text = format!("attempt {attempt} of {max} failed: {reason}");
            if maybe_sent {
                text.push_str(&format!(" (the provider may have accepted it before the failure: a retry can duplicate it; it is retried only through {via})"));
            }
            let transition = Transition {
                failure_reason: Some(reason.clone()),
                ..Transition::new(
                    SENDING,
                    DeliveryState::Retrying,
                    Event::new("retry_scheduled", text)
                        .recovery("retried by the broker with exponential backoff and the provider's Retry-After; failed after the last attempt")
                        .detail(json!({ "attempt": attempt, "maybe_sent": maybe_sent, "retry_after_secs": retry_after.map(|d| d.as_secs()), "provider": via })),
                )
            };
            store::transition(&handler.pool, message, transition).await?;
            Ok(Outcome::Retry {
                reason,
                after: retry_after,
            })
        }
        Answer::Fail {
            reason,
            next_action,
            opted_out,
        } => {
            if opted_out {
                tracing::info!(message.id = %message.id, "provider reports an opt-out");
                if let Ok(channel) = message.channel.parse::<Channel>() {
                    store::opt_out_contact(
                        &handler.pool,
                        message.contact_id,
                        channel,
                        "provider: unsubscribed recipient",
                    )
                    .await?;
                }
            }
            fail(handler, message, reason, next_action).await
        }
    }
}

/// Failed for good: not retried further, the owner decides.
pub async fn fail(
    handler: &SendHandler,
    message: &Message,
    reason: String,
    next_action: &str,
) -> Result<Outcome, sqlx::Error> {
    tracing::warn!(message.id = %message.id, %reason, "message failed");
    let transition = Transition {
        failure_reason: Some(reason.clone()),
        next_action: Some(next_action.to_string()),
        task: Some(task("Message failed".into(), next_action, 4)),
        ..Transition::new(
            &[DeliveryState::Sending],
            DeliveryState::Failed,
            Event::new("failed", reason).recovery("not retried further; the owner decides"),
        )
    };
    store::transition(&handler.pool, message, transition).await?;
    Ok(Outcome::Ack)
}

/// A message pinned to `provider` (its last attempt may have reached it) while that provider is
/// failing and another is not: never sent elsewhere. It waits for its provider; once its outcome
/// has been unknown for the window of `dispatch_outcome_unknown` (`age` past it), it is failed
/// as such, with a task for its owner to check that provider.
pub async fn pinned_away(
    handler: &SendHandler,
    message: &Message,
    provider: &str,
    age: Duration,
) -> Result<Outcome, sqlx::Error> {
    let window = crate::failover::pinned_wait(handler.settings.sender.provider_timeout);
    if age < window {
        return Ok(Outcome::Defer {
            after: Duration::from_secs(2),
            reason: format!(
                "its last attempt may have reached {provider}, which is failing: not sent elsewhere"
            ),
        });
    }
    let next_action = format!(
        "check {provider}'s log for this message; if it did not go out, send again with a new idempotency key"
    );
    let reason = format!(
        "dispatch_outcome_unknown: its last attempt may have reached {provider}, which is failing; not sent through another provider"
    );
    tracing::warn!(message.id = %message.id, provider, "pinned to a failing provider: failed as dispatch_outcome_unknown");
    let transition = Transition {
        failure_reason: Some("dispatch_outcome_unknown".into()),
        next_action: Some(next_action.clone()),
        task: Some(task("Message failed".into(), &next_action, 4)),
        ..Transition::new(
            &[DeliveryState::Retrying],
            DeliveryState::Failed,
            Event::new("failed", reason)
                .recovery("not retried further and not sent elsewhere; the owner decides")
                .detail(json!({ "provider": provider })),
        )
    };
    store::transition(&handler.pool, message, transition).await?;
    Ok(Outcome::Ack)
}
