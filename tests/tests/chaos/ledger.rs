//! What the database and the provider say about the run's messages: which are settled, which
//! are lost or stuck, and which reached the provider more than once and why.
//!
//! "Settled" is where a message rests until a person acts: `delivered`, `undelivered`,
//! `unknown_delivery` (the provider cannot say; owner task), `failed` and `blocked` with a
//! reason, `awaiting_approval` (the portal updates nobody approves), a portal update `sent`, or
//! `cancelled`. A message `sent` through Twilio or SendGrid is not settled until its delivery
//! status is known (from a callback or from reconciliation): a lost callback is a loss too.

use std::collections::{BTreeMap, HashMap};

use sqlx::PgPool;

use crate::traffic;

/// The SQL condition for a settled message (of `comms.messages`).
pub const SETTLED: &str = "(delivery_state IN ('delivered', 'undelivered', 'unknown_delivery', 'cancelled', 'awaiting_approval')
      OR (delivery_state IN ('failed', 'blocked') AND failure_reason IS NOT NULL)
      OR (channel = 'portal' AND delivery_state = 'sent'))";

/// How many of `keys` are settled (`None` while the database does not answer).
pub async fn settled(pool: &PgPool, keys: &[String]) -> Option<i64> {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM comms.messages WHERE idempotency_key = ANY($1) AND {SETTLED}"
    ))
    .bind(keys)
    .fetch_one(pool)
    .await
    .ok()
}

/// The states of those of `keys` not settled yet, with counts (for the progress lines).
pub async fn unsettled(pool: &PgPool, keys: &[String]) -> String {
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT CASE WHEN {SETTLED} THEN 'settled' ELSE delivery_state END, count(*)
         FROM comms.messages WHERE idempotency_key = ANY($1) GROUP BY 1 ORDER BY 1"
    ))
    .bind(keys)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    let recorded: i64 = rows.iter().map(|(_, n)| n).sum();
    let missing = keys.len() as i64 - recorded;
    let mut parts: Vec<String> = rows
        .iter()
        .filter(|(s, _)| s != "settled")
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    if missing > 0 {
        parts.push(format!("{missing} not recorded yet"));
    }
    let mut text = parts.join(", ");
    // A few left: which, and what last happened to each.
    let few: Vec<(String, String, String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT m.idempotency_key, m.delivery_state, e.event_type, e.reason
         FROM comms.messages m
         LEFT JOIN LATERAL (SELECT event_type, reason FROM comms.message_events
                            WHERE message_id = m.id ORDER BY id DESC LIMIT 1) e ON true
         WHERE m.idempotency_key = ANY($1) AND NOT {SETTLED} LIMIT 4"
    ))
    .bind(keys)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    if (1..=3).contains(
        &rows
            .iter()
            .filter(|(s, _)| s != "settled")
            .map(|(_, n)| n)
            .sum::<i64>(),
    ) {
        for (key, state, event, reason) in few {
            let reason: String = reason.unwrap_or_default().chars().take(100).collect();
            text.push_str(&format!(
                "\n            {key} {state}, last event {event}: {reason}"
            ));
        }
    }
    text
}

/// One message as the run checks it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub idempotency_key: String,
    pub delivery_state: String,
    pub failure_reason: Option<String>,
    pub settled: bool,
    /// Open owner tasks about the message.
    pub tasks: i64,
    /// `retry_scheduled` events saying the provider may have accepted the failed attempt.
    pub maybe_sent: i64,
    /// `held` events (a pause caught it).
    pub held: i64,
    /// `dispatch_released` events: claimed by a process that died before its call started, and
    /// sent again after recovery.
    pub released: i64,
}

/// Every message of the run, by number.
pub async fn rows(pool: &PgPool) -> Result<HashMap<usize, Row>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT m.idempotency_key, m.delivery_state, m.failure_reason, {SETTLED} AS settled,
                (SELECT count(*) FROM comms.tasks t WHERE t.message_id = m.id AND t.state = 'open') AS tasks,
                (SELECT count(*) FROM comms.message_events e WHERE e.message_id = m.id
                   AND e.event_type = 'retry_scheduled' AND e.detail->>'maybe_sent' = 'true') AS maybe_sent,
                (SELECT count(*) FROM comms.message_events e WHERE e.message_id = m.id
                   AND e.event_type = 'held') AS held,
                (SELECT count(*) FROM comms.message_events e WHERE e.message_id = m.id
                   AND e.event_type = 'dispatch_released') AS released
         FROM comms.messages m WHERE m.idempotency_key LIKE 'chaos-%'"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((traffic::number_in(&r.idempotency_key)?, r)))
        .collect())
}

/// How many times the provider accepted each message (from the sandbox's record).
pub async fn provider_copies(
    sandbox: &comms_sandbox::SandboxClient,
) -> Result<HashMap<usize, usize>, comms_sandbox::ClientError> {
    let mut copies = HashMap::new();
    for message in sandbox.messages().await? {
        if let Some(n) = traffic::number_in(&message.body) {
            *copies.entry(n).or_insert(0) += 1;
        }
    }
    Ok(copies)
}

/// The figures of one set of messages (a phase's, or the whole run's).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub enqueued: usize,
    /// Enqueued, and no message recorded at the end.
    pub lost: usize,
    /// Recorded, and not settled at the end, by state.
    pub stuck: BTreeMap<String, usize>,
    /// Extra provider copies (a message accepted twice counts one).
    pub duplicated: usize,
    /// Extra copies the timeline explains: each follows a retry after a failure at which the
    /// provider may have accepted the message (the documented timeout window).
    pub explained: usize,
    /// Failed as `dispatch_outcome_unknown`: possibly not sent, with an owner task.
    pub outcome_unknown: usize,
    /// ... of them the provider has in fact (the others never reached it).
    pub unknown_but_sent: usize,
    /// ... of them without an open owner task (a failure of the run).
    pub unknown_without_task: usize,
    /// Failed or blocked, by reason (the first words).
    pub failed: BTreeMap<String, usize>,
    pub unknown_delivery: usize,
    pub held: usize,
    /// Claimed by a sender that died before the call started, released and sent again.
    pub released: usize,
    pub waiting_approval: usize,
    /// Portal updates the owner approved that were not sent.
    pub approved_not_sent: usize,
    pub numbers_lost: Vec<usize>,
    pub numbers_stuck: Vec<usize>,
    pub numbers_unexplained: Vec<usize>,
}

impl Tally {
    /// Whether nothing here fails the run.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.stuck.is_empty()
            && self.duplicated == self.explained
            && self.unknown_without_task == 0
            && self.approved_not_sent == 0
    }
}

/// The tally of messages `numbers` (all of them enqueued).
pub fn tally(
    numbers: &[usize],
    rows: &HashMap<usize, Row>,
    copies: &HashMap<usize, usize>,
    approved: &dyn Fn(usize) -> bool,
) -> Tally {
    let mut t = Tally {
        enqueued: numbers.len(),
        ..Tally::default()
    };
    for &n in numbers {
        let Some(row) = rows.get(&n) else {
            t.lost += 1;
            t.numbers_lost.push(n);
            continue;
        };
        let at_provider = copies.get(&n).copied().unwrap_or(0);
        let extra = at_provider.saturating_sub(1);
        if extra > 0 {
            t.duplicated += extra;
            let explained = extra.min(usize::try_from(row.maybe_sent).unwrap_or(0));
            t.explained += explained;
            if explained < extra {
                t.numbers_unexplained.push(n);
            }
        }
        if row.held > 0 {
            t.held += 1;
        }
        if row.released > 0 {
            t.released += 1;
        }
        let reason = row.failure_reason.as_deref().unwrap_or("");
        match row.delivery_state.as_str() {
            "failed" | "blocked" => {
                let head: String = reason.split([':', ' ']).next().unwrap_or("").to_string();
                *t.failed.entry(head).or_insert(0) += 1;
                if reason.starts_with("dispatch_outcome_unknown") {
                    t.outcome_unknown += 1;
                    if at_provider > 0 {
                        t.unknown_but_sent += 1;
                    }
                    if row.tasks == 0 {
                        t.unknown_without_task += 1;
                    }
                }
            }
            "unknown_delivery" => t.unknown_delivery += 1,
            "awaiting_approval" => {
                t.waiting_approval += 1;
                if approved(n) {
                    t.approved_not_sent += 1;
                }
            }
            _ => {}
        }
        if !row.settled {
            *t.stuck.entry(row.delivery_state.clone()).or_insert(0) += 1;
            t.numbers_stuck.push(n);
        }
    }
    t
}
