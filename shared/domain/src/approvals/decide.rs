//! Recording decisions: an owner's (approve, reject, mark an AI draft safe) and the fleet's own
//! (expire). Each is one transaction on a locked message that records the decision on the content
//! hash, moves the message, closes the owner's approval task and appends the event, so a decision
//! is never half-made and two people deciding at once cannot both win.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::messages::{DeliveryState, ledger};

use super::{ApprovalError, FLEET_ACTOR, Gate, approval_hash, approval_seconds, may_decide};

/// What a person decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send this exact content.
    Approve,
    /// Do not send it; the reason is kept with the decision and shown in the timeline.
    Reject { reason: String },
    /// The AI-drafted content was reviewed and is safe to go on.
    ReviewSafe,
}

/// A recorded decision.
#[derive(Debug, Clone, Serialize)]
pub struct Decided {
    pub message_id: Uuid,
    pub idempotency_key: String,
    pub owner: String,
    /// `approved`, `rejected`, `reviewed_safe` or `expired`.
    pub decision: &'static str,
    pub decided_by: String,
    /// The owner a delegate decided for.
    pub on_behalf_of: Option<String>,
    pub reason: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub decided_at: DateTime<Utc>,
    /// Request to decision.
    pub approval_seconds: f64,
    /// The message's state now: `received` (handed to the sender again) or `blocked`.
    pub state: &'static str,
    /// The message's channel, when it was recorded and its stored trace context: for the
    /// enqueue-to-final metric and the decision's step in the message's trace.
    #[serde(skip)]
    pub channel: String,
    #[serde(skip)]
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub traceparent: Option<String>,
}

impl Decided {
    /// Whether the message must go back to `comms.send` ([`super::republish`]).
    pub fn goes_on(&self) -> bool {
        self.state == DeliveryState::Received.as_str()
    }
}

#[derive(sqlx::FromRow)]
struct Waiting {
    id: Uuid,
    idempotency_key: String,
    owner: String,
    source: String,
    record_type: String,
    record_id: Uuid,
    delivery_state: String,
    subject: Option<String>,
    body: Option<String>,
    updated_at: DateTime<Utc>,
    channel: String,
    created_at: DateTime<Utc>,
    traceparent: Option<String>,
}

const COLUMNS: &str = "id, idempotency_key, owner, source, record_type, record_id, delivery_state, subject, body, updated_at, channel, created_at, traceparent";

/// How one decision changes the message.
struct Apply<'a> {
    decision: &'static str,
    actor: &'a str,
    on_behalf_of: Option<&'a str>,
    reason: Option<&'a str>,
    to: DeliveryState,
    failure_reason: Option<&'static str>,
    next_action: Option<&'static str>,
    event_reason: String,
    recovery: &'static str,
    /// `done` when a person acted, `cancelled` when the fleet closed the task.
    close_tasks_as: &'static str,
    /// A new owner task (title), when a person must still act.
    new_task: Option<&'static str>,
}

/// Records `decision` by `actor` on the message `reference` (id or idempotency key).
///
/// Only the message's owner or a delegate the owner named may decide. Approve and reject apply to
/// an owner approval, mark-safe to an AI-draft review (reject to both). The decision covers the
/// content stored on the message now. An approved or reviewed message is `received` again and
/// must then be handed to the sender with [`super::republish`]; a rejected one is `blocked`.
pub async fn decide(
    pool: &PgPool,
    reference: &str,
    decision: Decision,
    actor: &str,
) -> Result<Decided, ApprovalError> {
    let actor = actor.trim();
    if actor.is_empty() {
        return Err(ApprovalError::Missing("who decides (--as)"));
    }
    if matches!(&decision, Decision::Reject { reason } if reason.trim().is_empty()) {
        return Err(ApprovalError::Missing(
            "the reason for a rejection (--reason)",
        ));
    }
    let mut tx = pool.begin().await?;
    let message: Option<Waiting> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM comms.messages WHERE id = $1 OR idempotency_key = $2 FOR UPDATE"
    ))
    .bind(reference.parse::<Uuid>().ok())
    .bind(reference)
    .fetch_optional(&mut *tx)
    .await?;
    let message = message.ok_or_else(|| ApprovalError::NotFound(reference.to_string()))?;
    if message.delivery_state != DeliveryState::AwaitingApproval.as_str() {
        return Err(ApprovalError::NotWaiting {
            id: message.id,
            state: message.delivery_state,
        });
    }
    let (gate, requested_at) = request(&mut tx, &message).await?;
    let wrong = |hint| ApprovalError::WrongGate {
        id: message.id,
        gate,
        hint,
    };
    match (&decision, gate) {
        (Decision::Approve, Gate::AiReview) => {
            return Err(wrong(
                "AI-drafted content is reviewed first: mark it safe (`commsctl review <id> --safe`) or reject it",
            ));
        }
        (Decision::ReviewSafe, Gate::Approval) => {
            return Err(wrong(
                "it is not an AI draft waiting for review: approve or reject it",
            ));
        }
        _ => {}
    }
    if !may_decide(&mut *tx, &message.owner, actor).await? {
        return Err(ApprovalError::NotAllowed {
            actor: actor.to_string(),
            owner: message.owner,
        });
    }
    let on_behalf_of = (actor != message.owner).then_some(message.owner.as_str());
    let by = match on_behalf_of {
        Some(owner) => format!("{actor} (delegate of {owner})"),
        None => actor.to_string(),
    };
    let apply = match &decision {
        Decision::Approve => Apply {
            decision: "approved",
            event_reason: format!("approved by {by}"),
            ..goes_on(actor, on_behalf_of)
        },
        Decision::ReviewSafe => Apply {
            decision: "reviewed_safe",
            event_reason: format!("AI draft reviewed and marked safe by {by}"),
            ..goes_on(actor, on_behalf_of)
        },
        Decision::Reject { reason } => Apply {
            decision: "rejected",
            actor,
            on_behalf_of,
            reason: Some(reason.trim()),
            to: DeliveryState::Blocked,
            failure_reason: Some("approval_rejected"),
            next_action: Some("revise the message and send it again with a new idempotency key"),
            event_reason: format!("rejected by {by}: {}", reason.trim()),
            recovery: "not sent; a revised request with a new idempotency key is checked again",
            close_tasks_as: "done",
            new_task: None,
        },
    };
    let decided = apply_decision(&mut tx, &message, requested_at, apply).await?;
    tx.commit().await?;
    observe(&decided);
    Ok(decided)
}

fn goes_on<'a>(actor: &'a str, on_behalf_of: Option<&'a str>) -> Apply<'a> {
    Apply {
        decision: "approved",
        actor,
        on_behalf_of,
        reason: None,
        to: DeliveryState::Received,
        failure_reason: None,
        next_action: None,
        event_reason: String::new(),
        recovery: "published to comms.send again; the sender sends it only if the content is still exactly what was decided on, after the pause switch and rate limits",
        close_tasks_as: "done",
        new_task: None,
    }
}

/// Blocks every message that has waited for a decision longer than `expire_after` (oldest
/// first, at most 500 a call) with `approval_expired`, and tells its owner. Safe to run in
/// several processes at once: a message another process is deciding on is skipped.
pub async fn expire_due(
    pool: &PgPool,
    expire_after: std::time::Duration,
) -> Result<Vec<Decided>, sqlx::Error> {
    let age = chrono::Duration::from_std(expire_after).unwrap_or(chrono::Duration::MAX);
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT m.id FROM comms.messages m
         LEFT JOIN LATERAL (
             SELECT e.occurred_at FROM comms.message_events e
             WHERE e.message_id = m.id AND e.event_type = 'approval_requested'
             ORDER BY e.id DESC LIMIT 1) r ON true
         WHERE m.delivery_state = 'awaiting_approval'
           AND COALESCE(r.occurred_at, m.updated_at) <= now() - $1::interval
         ORDER BY COALESCE(r.occurred_at, m.updated_at) LIMIT 500",
    )
    .bind(age)
    .fetch_all(pool)
    .await?;
    let mut expired = Vec::new();
    for id in due {
        let mut tx = pool.begin().await?;
        let message: Option<Waiting> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM comms.messages
             WHERE id = $1 AND delivery_state = 'awaiting_approval' FOR UPDATE SKIP LOCKED"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(message) = message else {
            continue;
        };
        let (_, requested_at) = request(&mut tx, &message).await?;
        let apply = Apply {
            decision: "expired",
            actor: FLEET_ACTOR,
            on_behalf_of: None,
            reason: None,
            to: DeliveryState::Blocked,
            failure_reason: Some("approval_expired"),
            next_action: Some(
                "decide sooner next time: send the message again with a new idempotency key if it is still needed",
            ),
            event_reason: format!("no decision within {}", humanize(expire_after.as_secs())),
            recovery: "not sent; a new request with a new idempotency key asks for approval again",
            close_tasks_as: "cancelled",
            new_task: Some("Message expired without a decision"),
        };
        let decided = apply_decision(&mut tx, &message, requested_at, apply).await?;
        tx.commit().await?;
        observe(&decided);
        expired.push(decided);
    }
    Ok(expired)
}

fn humanize(seconds: u64) -> String {
    match seconds {
        s if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// What the message waits for and since when: its latest `approval_requested` event.
async fn request(
    conn: &mut PgConnection,
    message: &Waiting,
) -> Result<(Gate, DateTime<Utc>), sqlx::Error> {
    let latest: Option<(Option<String>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT reason, occurred_at FROM comms.message_events
         WHERE message_id = $1 AND event_type = 'approval_requested' ORDER BY id DESC LIMIT 1",
    )
    .bind(message.id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match latest {
        Some((reason, at)) => (Gate::from_reason(reason.as_deref()), at),
        None => (Gate::Approval, message.updated_at),
    })
}

async fn apply_decision(
    conn: &mut PgConnection,
    message: &Waiting,
    requested_at: DateTime<Utc>,
    apply: Apply<'_>,
) -> Result<Decided, sqlx::Error> {
    let hash = approval_hash(
        message.subject.as_deref(),
        message.body.as_deref().unwrap_or(""),
    );
    let (decided_at, seconds): (DateTime<Utc>, Option<f64>) = sqlx::query_as(
        "INSERT INTO comms.message_approvals
             (message_id, content_hash, decision, decided_by, on_behalf_of, reason, requested_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING decided_at, approval_seconds",
    )
    .bind(message.id)
    .bind(&hash)
    .bind(apply.decision)
    .bind(apply.actor)
    .bind(apply.on_behalf_of)
    .bind(apply.reason)
    .bind(requested_at)
    .fetch_one(&mut *conn)
    .await?;
    ledger::moves::decide_approval(
        &mut *conn,
        message.id,
        apply.to,
        apply.failure_reason,
        apply.next_action,
    )
    .await?;
    sqlx::query(
        "UPDATE comms.tasks SET state = $2, done_at = now(), done_by = $3
         WHERE message_id = $1 AND state = 'open'",
    )
    .bind(message.id)
    .bind(apply.close_tasks_as)
    .bind(apply.actor)
    .execute(&mut *conn)
    .await?;
    if let (Some(title), Some(next_action)) = (apply.new_task, apply.next_action) {
        ledger::tasks::open(
            &mut *conn,
            &ledger::tasks::MessageTask {
                owner: &message.owner,
                title,
                next_action,
                reason: &apply.event_reason,
                due_in: ledger::tasks::due_in_a_day(),
                record_type: Some(&message.record_type),
                record_id: Some(message.record_id),
                message_id: Some(message.id),
                inbound_id: None,
            },
        )
        .await?;
    }
    let approval_seconds = seconds.unwrap_or(0.0);
    ledger::append_event(
        &mut *conn,
        ledger::Entry {
            message_id: Some(message.id),
            event_type: apply.decision,
            actor: apply.actor,
            source: &message.source,
            owner: Some(&message.owner),
            reason: &apply.event_reason,
            recovery_rule: Some(apply.recovery),
            detail: &json!({
                "content_hash": hash,
                "on_behalf_of": apply.on_behalf_of,
                "requested_at": requested_at,
                "approval_seconds": approval_seconds,
            }),
        },
    )
    .await?;
    Ok(Decided {
        message_id: message.id,
        idempotency_key: message.idempotency_key.clone(),
        owner: message.owner.clone(),
        decision: apply.decision,
        decided_by: apply.actor.to_string(),
        on_behalf_of: apply.on_behalf_of.map(str::to_string),
        reason: apply.reason.map(str::to_string),
        requested_at,
        decided_at,
        approval_seconds,
        state: apply.to.as_str(),
        channel: message.channel.clone(),
        created_at: message.created_at,
        traceparent: message.traceparent.clone(),
    })
}

fn observe(decided: &Decided) {
    approval_seconds()
        .with_label_values(&[decided.decision])
        .observe(decided.approval_seconds);
    crate::messages::metrics::observe_final(&decided.channel, decided.state, decided.created_at);
    // The decision is a step in the message's trace (docs/operations.md).
    let step = comms_runtime::trace_context::message_step(
        "approval.decision",
        decided.message_id,
        decided.traceparent.as_deref(),
    );
    step.in_scope(|| {
        tracing::info!(
            message.id = %decided.message_id,
            approval.decision = decided.decision,
            approval.seconds = decided.approval_seconds,
            "approval decision recorded"
        );
    });
}
