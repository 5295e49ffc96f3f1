//! Where a [`Decision`] becomes the runtime's [`Outcome`]: the one match over every decision that
//! ends a message's turn, each recorded through [`crate::outcomes`] (its state change, event and
//! owner task) before the runtime is answered. Both paths settle through here: the group path
//! hands every member it does not send to the one-message path, which settles it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_runtime::runtime::Outcome;
use sqlx::PgPool;

use crate::outcomes;
use crate::rules::{Decision, Prepared};
use crate::sender::SendHandler;
use crate::store::{self, Message};

/// Records `decision` for `message` and says what the broker does with its delivery.
pub async fn settle(
    handler: &SendHandler,
    message: &Message,
    decision: Decision,
    now: DateTime<Utc>,
) -> Result<Outcome, sqlx::Error> {
    match decision {
        Decision::Settled => Ok(Outcome::Ack),
        // Back when the bound is reached (the delay tier at most that long), not sooner: a live
        // dispatch records its outcome by then, and a dead one's message is decided then.
        Decision::InFlight { recheck_in } => Ok(Outcome::Defer {
            after: recheck_in.max(Duration::from_secs(1)),
            reason: "another delivery is dispatching this message".into(),
        }),
        Decision::Unknown {
            reason,
            next_action,
        } => outcomes::fail(handler, message, reason, next_action).await,
        Decision::Block { refusal, .. } => outcomes::block(handler, message, refusal).await,
        Decision::PortalUnsafe { problems, .. } => {
            outcomes::portal_unsafe(handler, message, &problems).await
        }
        Decision::AwaitApproval { reason, hash, .. } => {
            outcomes::await_approval(handler, message, reason, &hash).await
        }
        Decision::Defer { until, reason, .. } => {
            outcomes::defer(handler, message, until, now, reason).await
        }
        Decision::WaitForOlder => Ok(Outcome::Defer {
            after: Duration::from_secs(1),
            reason: "an older released message to this recipient goes first".into(),
        }),
        Decision::Hold(pause) => outcomes::hold(handler, message, &pause).await,
        Decision::Blind { stale_for } => {
            tracing::warn!(message.id = %message.id, stale_for_ms = stale_for.map(|d| d.as_millis() as u64), "pause switch unconfirmed: not sending (blind)");
            Ok(Outcome::Defer {
                after: Duration::from_secs(1),
                reason: "blind: the pause switch could not be confirmed".into(),
            })
        }
        // A decision to send (or release and send again) is carried out by the caller, never
        // settled; should one arrive here, the delivery comes back and is decided again.
        Decision::Dispatch(_) | Decision::Send(_) | Decision::Redispatch { .. } => {
            Ok(Outcome::retry("decided to send, not sent"))
        }
    }
}

/// Stores what the rules prepared, whatever they decided: the express consent a request brings
/// (kept on the contact) and the rendered content with the message's client (so approvers and
/// the timeline see what goes out).
pub async fn keep_prepared(
    pool: &PgPool,
    message: &Message,
    request: &comms_domain::contract::ValidSendRequest,
    prepared: &Prepared,
) -> Result<(), sqlx::Error> {
    if prepared.keep_consent
        && let Some(consent) = request.consent.as_ref()
    {
        sqlx::query(
            "UPDATE comms.contact_channels SET consent_state = 'express', consent_basis = 'express',
                 consent_source = $3, consent_at = $4, updated_at = now()
             WHERE contact_id = $1 AND channel = $2 AND consent_state IN ('unknown', 'implied')",
        )
        .bind(message.contact_id)
        .bind(&message.channel)
        .bind(&consent.source)
        .bind(consent.captured_at)
        .execute(pool)
        .await?;
    }
    if let Some(rendered) = &prepared.content {
        store::save_rendered(pool, message.id, rendered, prepared.client_id).await?;
    }
    Ok(())
}
