//! The writes of a group of new messages: record-and-claim (which also marks the provider calls
//! as started, right before they start), and the `sent` outcomes after them — one statement (one
//! commit) each for the whole group.
//!
//! The statements are the ledger's (`comms_domain::messages::ledger::{record, batch}`); this
//! module turns the group's members into its rows.
//!
//! Both keep the single-message guarantees: a message is created only if its idempotency key is
//! new (a known key is left to the one-message path), it moves to `sent` only from `sending`, and
//! every state change has its event in the same statement.

use comms_domain::contract::ValidSendRequest;
use comms_domain::messages::ledger::{batch, record};
use sqlx::PgPool;
use uuid::Uuid;

use crate::render::Rendered;
use crate::sender::SendHandler;
use crate::store::{ACTOR, DISPATCH_RECOVERY, Message};

/// One provider acceptance to record.
pub use comms_domain::messages::ledger::batch::Accepted;

/// A new message ready to be recorded and claimed.
pub struct NewMessage<'a> {
    pub request: &'a ValidSendRequest,
    pub contact_id: Uuid,
    pub address: String,
    pub client_id: Option<Uuid>,
    pub rendered: Rendered,
    /// The provider account it will go through (for the `dispatching` event).
    pub account: String,
    /// The span of this member's send, and its context as stored on the message.
    pub span: tracing::Span,
    pub traceparent: Option<String>,
}

/// Records each message already claimed for dispatch by `claim` (`sending`, attempt 1, rendered
/// content stored, its call marked as started) with its `received` and `dispatching` events, in one
/// statement
/// ([`record::record_and_claim`]: rows in key order, so two groups holding the same keys never
/// deadlock). Returns the messages it created; a message whose idempotency key already exists is
/// not among them.
pub async fn record_and_claim(
    pool: &PgPool,
    messages: &[NewMessage<'_>],
    claim: Uuid,
) -> Result<Vec<Message>, sqlx::Error> {
    let rows: Vec<record::Claimed<'_>> = messages
        .iter()
        .map(|message| record::Claimed {
            request: message.request,
            contact_id: message.contact_id,
            address: &message.address,
            client_id: message.client_id,
            content: message.rendered.stored(),
            account: &message.account,
            traceparent: message.traceparent.as_deref(),
        })
        .collect();
    record::record_and_claim(pool, &rows, claim, ACTOR, DISPATCH_RECOVERY).await
}

/// Claims the group: records and claims its new members, and claims its releases (`again`, each
/// with its message id), both by `claim`, side by side. Both statements run to their end even
/// when one fails: a statement dropped while its `COMMIT` is on the way may still commit after
/// the release below has looked. An empty one is not sent at all. On an error, whatever the
/// claim holds is released first ([`crate::answer_kept::release_unconfirmed_claim`]: the other
/// statement, or this one's `COMMIT`, may have committed all the same, and no call was made).
pub async fn claim_both(
    handler: &SendHandler,
    new: &[NewMessage<'_>],
    again: &[(&NewMessage<'_>, Uuid)],
    claim: Uuid,
) -> Result<(Vec<Message>, Vec<Message>), sqlx::Error> {
    let (claimed_new, claimed_again) = tokio::join!(
        async {
            if new.is_empty() {
                return Ok(Vec::new());
            }
            record_and_claim(&handler.pool, new, claim).await
        },
        async {
            if again.is_empty() {
                return Ok(Vec::new());
            }
            super::released::claim(&handler.pool, again, claim).await
        },
    );
    match (claimed_new, claimed_again) {
        (Ok(new), Ok(again)) => Ok((new, again)),
        (Err(error), _) | (_, Err(error)) => {
            crate::answer_kept::release_unconfirmed_claim(&handler.pool, &handler.settings, claim)
                .await;
            Err(error)
        }
    }
}

/// Moves each accepted message from `sending` to `sent` with the provider's id and its `sent`
/// event, in one statement ([`batch::mark_sent`], in id order so it waits for the status worker
/// rather than deadlocks). Returns how many moved (a message no longer `sending` is left as it is).
pub async fn record_sent(pool: &PgPool, accepted: &[Accepted]) -> Result<u64, sqlx::Error> {
    batch::mark_sent(pool, accepted, ACTOR).await
}
