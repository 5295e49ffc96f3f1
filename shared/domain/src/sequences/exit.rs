//! Ending enrolments: the exit checks the scheduler makes before each step, ending an enrolment
//! with its reason, and writing that reason into the timeline of the enrolment's latest message.
//!
//! Exit reasons: `reply`, `opted_out`, `booked`, `bounced`, `stopped` (an owner's manual stop),
//! `rolled_back`. The first four apply when the sequence's `exit_on` names them (`opt_out` and
//! `bounce` for the last two); a stop and a rollback always do.

use sqlx::{Postgres, Transaction};

use crate::messages::ledger;
use uuid::Uuid;

/// Who writes sequence events.
pub const ACTOR: &str = "comms-sequences";

/// Why an enrolment must end before its next step (on `channel`), if it must.
pub async fn check(
    tx: &mut Transaction<'_, Postgres>,
    enrolment: Uuid,
    exit_on: &[String],
    channel: &str,
) -> Result<Option<&'static str>, sqlx::Error> {
    let on = |rule: &str| exit_on.iter().any(|r| r == rule);
    // One read: the enrolment's own messages, the contact's consent on the step's channel and
    // booked outcomes attributed to the enrolment or its messages, or — when attributed to no
    // message or enrolment — to its record (and sequence, if named).
    let (replied, opted_out, suppressed, booked): (bool, bool, bool, bool) = sqlx::query_as(
        "SELECT
           EXISTS (SELECT 1 FROM comms.sequence_sends s JOIN comms.messages m
                     ON m.idempotency_key = s.idempotency_key
                   WHERE s.enrolment_id = e.id AND m.reply_state = 'replied'),
           EXISTS (SELECT 1 FROM comms.contact_channels c
                   WHERE c.contact_id = e.contact_id AND c.channel = $2
                     AND c.consent_state = 'opted_out'),
           EXISTS (SELECT 1 FROM comms.contact_channels c
                   WHERE c.contact_id = e.contact_id AND c.channel = $2
                     AND c.consent_state = 'suppressed')
           OR EXISTS (SELECT 1 FROM comms.sequence_sends s JOIN comms.messages m
                        ON m.idempotency_key = s.idempotency_key
                      WHERE s.enrolment_id = e.id AND m.opt_out_state = 'suppressed'),
           EXISTS (SELECT 1 FROM comms.outcomes o
                   WHERE o.type = 'booked'
                     AND (o.enrolment_id = e.id
                          OR o.message_id IN (SELECT m.id FROM comms.sequence_sends s
                                              JOIN comms.messages m ON m.idempotency_key = s.idempotency_key
                                              WHERE s.enrolment_id = e.id)
                          OR (o.message_id IS NULL AND o.enrolment_id IS NULL
                              AND o.record_type = e.record_type AND o.record_id = e.record_id
                              AND (o.sequence_name IS NULL OR o.sequence_name = e.sequence_name))))
         FROM comms.sequence_enrolments e WHERE e.id = $1",
    )
    .bind(enrolment)
    .bind(channel)
    .fetch_one(&mut **tx)
    .await?;
    // An opt-out or a suppression is named before a reply: a STOP is also an answer.
    Ok(if opted_out && on("opt_out") {
        Some("opted_out")
    } else if suppressed && on("bounce") {
        Some("bounced")
    } else if replied && on("reply") {
        Some("reply")
    } else if booked && on("booked") {
        Some("booked")
    } else {
        None
    })
}

/// Ends an active enrolment with `reason`; false when it was not active (already ended).
pub async fn end(
    tx: &mut Transaction<'_, Postgres>,
    enrolment: Uuid,
    reason: &str,
    detail: &str,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sqlx::Error> {
    let ended = sqlx::query(
        "UPDATE comms.sequence_enrolments SET state = 'exited', exit_reason = $2, exit_detail = $3,
             next_step = NULL, next_due_at = NULL, ended_at = $4
         WHERE id = $1 AND state = 'active'",
    )
    .bind(enrolment)
    .bind(reason)
    .bind(detail)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if ended {
        timeline(tx, enrolment, reason, detail, actor).await?;
        crate::sequences::exit::metrics()
            .with_label_values(&[reason])
            .inc();
    }
    Ok(ended)
}

/// Writes `sequence_exited` with the reason into the timeline of the enrolment's latest step
/// message (none when no step was sent yet: the reason is then on the enrolment only).
pub async fn timeline(
    tx: &mut Transaction<'_, Postgres>,
    enrolment: Uuid,
    reason: &str,
    detail: &str,
    actor: &str,
) -> Result<(), sqlx::Error> {
    ledger::moves::sequence_exited(&mut **tx, enrolment, reason, detail, actor).await
}

/// Cancels the step messages of `enrolments` that have not gone out yet (a quiet-hours deferral,
/// a hold, a retry: a dispatchable state), each with a `cancelled` event. Returns how many.
pub async fn cancel_unsent(
    tx: &mut Transaction<'_, Postgres>,
    enrolments: &[Uuid],
    reason: &str,
    actor: &str,
) -> Result<i64, sqlx::Error> {
    let done = ledger::moves::cancel_sequence_unsent(&mut **tx, enrolments, reason, actor).await?;
    Ok(i64::try_from(done).unwrap_or(i64::MAX))
}

/// `comms_sequence_exits_total{reason}`.
pub fn metrics() -> &'static prometheus::IntCounterVec {
    static EXITS: std::sync::LazyLock<prometheus::IntCounterVec> = std::sync::LazyLock::new(|| {
        comms_runtime::metrics::counter(
            "comms_sequence_exits_total",
            "Enrolments ended before their last step, by reason",
            &["reason"],
        )
    });
    &EXITS
}
