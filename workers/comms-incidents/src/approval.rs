//! A notice that needs its owner's approval: the proof goes through the existing approval
//! workflow (the sender parks it in `awaiting_approval` with an owner task), and the owner's
//! decision on it — approve, reject, or expiry — decides the whole notice.

use comms_domain::messages::DeliveryState;
use comms_runtime::amqp::{Outgoing, Publisher};
use sqlx::PgPool;

use crate::fanout::{FanoutError, Notice, notice_ids, proof_contact, proof_request};
use crate::{ACTOR, store};

/// The proof's state, failure reason, and latest decision (decision, who, why).
type ProofRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Publishes the proof of a waiting notice, or takes the owner's decision on it.
pub(crate) async fn advance(
    pool: &PgPool,
    publisher: &Publisher,
    exchange: &str,
    notice: &Notice,
) -> Result<(), FanoutError> {
    let (id, incident, owner) = notice_ids(notice);
    let Some(key) = notice.proof_key.clone() else {
        let Some(contact) = proof_contact(pool, incident).await? else {
            // Nobody to tell: the notice is done with every client skipped as no_contact.
            sqlx::query("UPDATE comms.incident_notices SET state = 'approved', basis = 'owner_approval', decided_by = $2, approved_at = now() WHERE id = $1 AND state = 'awaiting_approval'")
                .bind(id).bind(ACTOR).execute(pool).await?;
            return Ok(());
        };
        let (key, body) = proof_request(notice, contact);
        publisher
            .publish(Outgoing {
                exchange,
                routing_key: "send.portal",
                body: &body,
                message_id: Some(key.clone()),
                content_type: Some(comms_domain::contract::CONTENT_TYPE),
                ..Outgoing::default()
            })
            .await?;
        sqlx::query("UPDATE comms.incident_notices SET proof_key = $2 WHERE id = $1")
            .bind(id)
            .bind(&key)
            .execute(pool)
            .await?;
        store::log(
            pool,
            incident,
            "approval_requested",
            ACTOR,
            serde_json::json!({
                "sequence": notice_sequence(notice), "owner": owner, "proof": key,
            }),
        )
        .await?;
        return Ok(());
    };
    let found: Option<ProofRow> =
        sqlx::query_as(
            "SELECT m.delivery_state, m.failure_reason, a.decision, a.decided_by, a.reason
             FROM comms.messages m
             LEFT JOIN LATERAL (SELECT decision, decided_by, reason FROM comms.message_approvals
                                WHERE message_id = m.id AND decision IN ('approved', 'rejected', 'expired')
                                ORDER BY decided_at DESC LIMIT 1) a ON true
             WHERE m.idempotency_key = $1",
        )
        .bind(&key)
        .fetch_optional(pool)
        .await?;
    let Some((state, failure, decision, decided_by, reason)) = found else {
        return Ok(()); // the sender has not recorded the proof yet
    };
    let never_sent = matches!(
        state.parse::<DeliveryState>(),
        Ok(DeliveryState::Blocked | DeliveryState::Failed | DeliveryState::Cancelled)
    );
    let (next, what) = match (decision.as_deref(), never_sent) {
        (Some("approved"), _) => ("approved", "notice_approved"),
        (Some(_), _) => ("rejected", "notice_rejected"),
        (None, true) => ("rejected", "notice_not_sendable"),
        _ => return Ok(()),
    };
    let changed = sqlx::query(
        "UPDATE comms.incident_notices SET state = $2, basis = CASE WHEN $2 = 'approved' THEN 'owner_approval' END,
             decided_by = $3, approved_at = CASE WHEN $2 = 'approved' THEN now() END,
             finished_at = CASE WHEN $2 = 'rejected' THEN now() END
         WHERE id = $1 AND state = 'awaiting_approval'",
    )
    .bind(id)
    .bind(next)
    .bind(decided_by.as_deref().unwrap_or(ACTOR))
    .execute(pool)
    .await?;
    if changed.rows_affected() > 0 {
        let detail = serde_json::json!({
            "sequence": notice_sequence(notice), "decided_by": decided_by,
            "decision": decision, "reason": reason, "proof_state": state, "failure_reason": failure,
        });
        if next == "rejected" {
            sqlx::query(
                "INSERT INTO internal.incident_notes (incident_id, sequence, kind, body, detail)
                 VALUES ($1, $2, 'notice', $3, $4)",
            )
            .bind(incident)
            .bind(notice_sequence(notice))
            .bind(format!("notice not sent ({what}): nothing went out"))
            .bind(&detail)
            .execute(pool)
            .await?;
        }
        store::log(
            pool,
            incident,
            what,
            decided_by.as_deref().unwrap_or(ACTOR),
            detail,
        )
        .await?;
    }
    Ok(())
}

fn notice_sequence(notice: &Notice) -> i64 {
    crate::fanout::sequence(notice)
}
