//! Emptying a message's personal content: the retention job's expired bodies and a person's
//! erasure. *Whether* and *when* content goes is a privacy decision (`crate::privacy`); how a
//! message row is emptied is written here, with the other writes of `comms.messages`.

use sqlx::PgExecutor;
use uuid::Uuid;

/// Retention, `message_bodies`: how many messages (not portal updates) recorded before `$1` in
/// one of the states `$2` still hold their content.
pub const EXPIRED_BODIES_COUNT: &str = "SELECT count(*) FROM comms.messages
             WHERE content_removed_at IS NULL AND channel <> 'portal' AND created_at < $1
               AND delivery_state = ANY($2)";

/// Retention, `message_bodies`: empties up to `$3` of them (oldest first, skipping rows another
/// run holds): the address becomes `$4`, subject and body go, the stored request is scrubbed, and
/// `content_removed_at` is `$5`.
pub const EXPIRED_BODIES_BATCH: &str =
    "UPDATE comms.messages m SET recipient_address = $4, subject = NULL, body = NULL,
                 request = comms.scrub_request(m.request, m.contact_id), content_removed_at = $5
             FROM (SELECT id FROM comms.messages
                   WHERE content_removed_at IS NULL AND channel <> 'portal' AND created_at < $1
                     AND delivery_state = ANY($2)
                   ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED) b
             WHERE m.id = b.id";

/// Erasure: empties messages `ids` (address `removed`, no subject or body, the request
/// scrubbed). Returns how many changed; a message already emptied is not counted again.
pub async fn erase<'e>(
    db: impl PgExecutor<'e>,
    ids: &[Uuid],
    removed: &str,
) -> Result<u64, sqlx::Error> {
    let emptied = sqlx::query(
        "UPDATE comms.messages SET recipient_address = $2, subject = NULL, body = NULL,
             request = comms.scrub_request(request, contact_id),
             content_removed_at = COALESCE(content_removed_at, now())
         WHERE id = ANY($1)
           AND (recipient_address <> $2 OR body IS NOT NULL OR subject IS NOT NULL
                OR request -> 'recipient' <> jsonb_build_object('contact_id', contact_id))",
    )
    .bind(ids)
    .bind(removed)
    .execute(db)
    .await?;
    Ok(emptied.rows_affected())
}
