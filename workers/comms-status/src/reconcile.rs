//! Reconciliation: a delivery status the provider could not tell us is asked for.
//!
//! Providers retry their callbacks little or not at all, so a gateway outage can leave messages
//! `sent` for good (a 3 s outage under load left 115–193 of them). Every tick, the reconciler
//! takes the messages `sent` for longer than `status.reconcile_after` without a final status,
//! oldest first, and asks their provider:
//!
//! - **Twilio**: `GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json` gives the message's
//!   status and error code. The answer is read by the same parser as a callback and applied
//!   through the same transaction ([`store::apply_via`]), with the same dedupe key
//!   (`Sid:status`), so a late callback is a duplicate and a status reached either way counts once.
//!   A status that is not final yet (`queued`, `sent` …) is asked again after another
//!   `reconcile_after`. A SID Twilio does not know (404) is `unknown_delivery`. A message that
//!   failed over to the second account (`providers.twilio_secondary`; its `sent` event names the
//!   provider) is asked of that account.
//! - **SendGrid**: its API offers no status per message, so the message becomes
//!   `unknown_delivery` with a task for its owner. A late event still moves it on.
//!
//! A check is claimed in `comms.reconciliations` before the provider is asked, so two status
//! replicas never ask about the same message in the same round. A provider that cannot be reached
//! is asked again next time; nothing changes meanwhile.

use std::time::Duration;

use chrono::{DateTime, Utc};
use comms_domain::messages::{DeliveryState, ledger};
use comms_domain::webhook_body::{Fields, Format};
use comms_runtime::runtime::Runtime;
use comms_runtime::settings::{ProviderSettings, TwilioSettings};
use comms_runtime::shutdown::Shutdown;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

use crate::metrics;
use crate::store::{self, ACTOR, Applied, Via};

/// Messages asked about per round, at most.
pub const BATCH: i64 = 100;
/// How long one provider request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why reconciliation leaves a message's delivery unknown.
const NO_STATUS_API: &str = "no_status_api";
const NOT_FOUND: &str = "not_found";

/// What one round did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Messages checked at their provider.
    pub checked: usize,
    /// Messages whose delivery state moved (to a final state or to `unknown_delivery`).
    pub moved: usize,
    /// Provider requests that failed (asked again next time).
    pub errors: usize,
}

#[derive(sqlx::FromRow)]
struct Due {
    id: Uuid,
    provider: String,
    provider_message_id: Option<String>,
    /// The provider's name in the channel's order, from the `sent` event (`twilio_secondary` …).
    via: Option<String>,
}

/// One round's claim: the messages `sent` before `$1` and not asked about since, oldest dispatch
/// first, at most `$2`, claimed in `comms.reconciliations`, with the provider their `sent` event
/// names. It reads `messages_awaiting_status_idx` (migration 0029), so a round costs the same at
/// any table size.
pub const DUE: &str = "WITH due AS (
        SELECT m.id FROM comms.messages m
        LEFT JOIN comms.reconciliations r ON r.message_id = m.id
        WHERE m.delivery_state = 'sent' AND m.provider IN ('twilio', 'sendgrid')
          AND m.dispatched_at < $1
          AND (r.last_checked_at IS NULL OR r.last_checked_at < $1)
        ORDER BY m.dispatched_at LIMIT $2),
    claimed AS (
        INSERT INTO comms.reconciliations (message_id)
        SELECT id FROM due
        ON CONFLICT (message_id) DO UPDATE
            SET checks = comms.reconciliations.checks + 1, last_checked_at = now()
            WHERE comms.reconciliations.last_checked_at < $1
        RETURNING message_id)
    SELECT m.id, m.provider, m.provider_message_id,
           (SELECT e.detail->>'provider' FROM comms.message_events e
             WHERE e.message_id = m.id AND e.event_type = 'sent'
             ORDER BY e.id DESC LIMIT 1) AS via
    FROM comms.messages m JOIN claimed c ON c.message_id = m.id";

/// Asks the providers about every message due as of `now` (at most [`BATCH`]).
pub async fn reconcile(
    pool: &PgPool,
    http: &reqwest::Client,
    providers: &ProviderSettings,
    after: Duration,
    now: DateTime<Utc>,
) -> Result<Round, sqlx::Error> {
    let cutoff = now - chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let due: Vec<Due> = sqlx::query_as(DUE)
        .bind(cutoff)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
    let mut round = Round::default();
    for message in due {
        round.checked += 1;
        let result = match (message.provider.as_str(), &message.provider_message_id) {
            ("twilio", Some(sid)) => {
                let account = message
                    .via
                    .as_deref()
                    .and_then(|via| providers.twilio_account(via))
                    .unwrap_or(&providers.twilio);
                twilio_check(pool, http, account, message.id, sid).await?
            }
            ("twilio", None) => unknown(pool, message.id, NOT_FOUND, after).await?,
            _ => unknown(pool, message.id, NO_STATUS_API, after).await?,
        };
        match result {
            Checked::Moved(label) => {
                round.moved += 1;
                count(&message.provider, label);
            }
            Checked::Unchanged(label) => count(&message.provider, label),
            Checked::Error => {
                round.errors += 1;
                count(&message.provider, "error");
            }
        }
    }
    Ok(round)
}

fn count(provider: &str, outcome: &str) {
    metrics::status()
        .reconciled
        .with_label_values(&[provider, outcome])
        .inc();
}

enum Checked {
    Moved(&'static str),
    Unchanged(&'static str),
    Error,
}

async fn remember(pool: &PgPool, id: Uuid, result: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE comms.reconciliations SET last_result = $2 WHERE message_id = $1")
        .bind(id)
        .bind(result)
        .execute(pool)
        .await
        .map(|_| ())
}

/// One Twilio Message resource fetch, applied like its callback.
async fn twilio_check(
    pool: &PgPool,
    http: &reqwest::Client,
    twilio: &TwilioSettings,
    id: Uuid,
    sid: &str,
) -> Result<Checked, sqlx::Error> {
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Messages/{sid}.json",
        twilio.base_url.trim_end_matches('/'),
        twilio.account_sid
    );
    let answer = http
        .get(&url)
        .basic_auth(&twilio.account_sid, Some(twilio.auth_token.expose_secret()))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await;
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(message.id = %id, error = %error.without_url(), "Twilio could not be asked for a message's status; asking again later");
            remember(pool, id, "error").await?;
            return Ok(Checked::Error);
        }
    };
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return unknown(pool, id, NOT_FOUND, Duration::ZERO).await;
    }
    let body = match response.bytes().await {
        Ok(body) if status.is_success() => body,
        _ => {
            tracing::warn!(message.id = %id, http.status = status.as_u16(), "Twilio did not give a message's status; asking again later");
            remember(pool, id, "error").await?;
            return Ok(Checked::Error);
        }
    };
    let Some(fields) = resource_fields(&body) else {
        tracing::warn!(message.id = %id, "Twilio's message resource had no status; asking again later");
        remember(pool, id, "error").await?;
        return Ok(Checked::Error);
    };
    let mut event = match crate::twilio::parse(&fields, &body) {
        Ok(event) => event,
        Err(problem) => {
            tracing::warn!(message.id = %id, %problem, "Twilio's message resource could not be read");
            remember(pool, id, "error").await?;
            return Ok(Checked::Error);
        }
    };
    event.detail["via"] = serde_json::json!(Via::Reconciliation.as_str());
    let provider_status = event.status.clone();
    remember(pool, id, &provider_status).await?;
    match store::apply_via(pool, &event, Utc::now(), Via::Reconciliation).await? {
        Applied::Recorded {
            moved_to: Some(to), ..
        } => {
            tracing::info!(message.id = %id, delivery.state = to, "delivery status reconciled from Twilio");
            Ok(Checked::Moved("moved"))
        }
        _ => Ok(Checked::Unchanged("unchanged")),
    }
}

/// The fields a status callback would carry, from a Twilio Message resource (JSON).
fn resource_fields(body: &[u8]) -> Option<Fields> {
    let resource: serde_json::Value = serde_json::from_slice(body).ok()?;
    let sid = resource.get("sid")?.as_str()?;
    let status = resource.get("status")?.as_str()?;
    let mut fields = vec![
        ("MessageSid".to_string(), sid.to_string()),
        ("MessageStatus".to_string(), status.to_string()),
    ];
    match resource.get("error_code") {
        Some(serde_json::Value::Number(code)) => {
            fields.push(("ErrorCode".into(), code.to_string()))
        }
        Some(serde_json::Value::String(code)) if !code.is_empty() => {
            fields.push(("ErrorCode".into(), code.clone()));
        }
        _ => {}
    }
    Some(Fields {
        format: Format::Json,
        fields,
    })
}

/// Marks a message `unknown_delivery` (still `sent`: nothing else moves it back) with a timeline
/// entry and a task for its owner.
async fn unknown(
    pool: &PgPool,
    id: Uuid,
    why: &'static str,
    after: Duration,
) -> Result<Checked, sqlx::Error> {
    let (reason, next_action) = if why == NO_STATUS_API {
        (
            format!(
                "no final delivery event from SendGrid within {}s of sending, and SendGrid's API gives no status per message",
                after.as_secs()
            ),
            "check the message in SendGrid's Email Activity (by its provider message id) or with the recipient; if it was not delivered, send again with a new idempotency key",
        )
    } else {
        (
            "Twilio does not know this message's SID".to_string(),
            "check the message in Twilio's console; if it was not delivered, send again with a new idempotency key",
        )
    };
    let mut tx = pool.begin().await?;
    let owner = ledger::moves::mark_unknown_delivery(&mut *tx, id, &reason, next_action).await?;
    let Some((owner, record_type, record_id)) = owner else {
        // A callback moved it meanwhile.
        tx.rollback().await?;
        remember(pool, id, why).await?;
        return Ok(Checked::Unchanged("unchanged"));
    };
    ledger::append_event(
        &mut *tx,
        ledger::Entry {
            message_id: Some(id),
            event_type: "unknown_delivery",
            actor: ACTOR,
            source: "reconciliation",
            owner: Some(&owner),
            reason: &reason,
            recovery_rule: None,
            detail: &serde_json::json!({ "via": Via::Reconciliation.as_str(), "result": why }),
        },
    )
    .await?;
    ledger::tasks::open(
        &mut *tx,
        &ledger::tasks::MessageTask {
            owner: &owner,
            title: "Delivery unknown: the provider never said",
            next_action,
            reason: &reason,
            due_in: ledger::tasks::due_in_a_day(),
            record_type: Some(&record_type),
            record_id: Some(record_id),
            message_id: Some(id),
            inbound_id: None,
        },
    )
    .await?;
    sqlx::query("UPDATE comms.reconciliations SET last_result = $2 WHERE message_id = $1")
        .bind(id)
        .bind(why)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(message.id = %id, result = why, "delivery unknown after reconciliation; owner task opened");
    Ok(Checked::Moved(DeliveryState::UnknownDelivery.as_str()))
}

/// How often the reconciler looks: a tenth of `after`, between 1 s and 1 min.
pub fn interval(after: Duration) -> Duration {
    (after / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Runs rounds until `shutdown` (not at all when `status.reconcile_after` is zero). A round that
/// fails is logged and tried again at the next tick.
pub async fn run(runtime: Runtime, shutdown: Shutdown) {
    let after = runtime.settings.status.reconcile_after;
    if after.is_zero() {
        tracing::info!("reconciliation is off (status.reconcile_after = 0)");
        return;
    }
    let http = reqwest::Client::new();
    let providers = runtime.settings.providers.clone();
    let mut ticks = tokio::time::interval(interval(after));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match reconcile(&runtime.pool, &http, &providers, after, Utc::now()).await {
            Ok(round) if round.checked > 0 => {
                tracing::info!(
                    checked = round.checked,
                    moved = round.moved,
                    errors = round.errors,
                    "reconciliation round"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "reconciliation round failed; trying again at the next tick");
            }
        }
    }
    tracing::info!("reconciler stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_resource_reads_like_its_callback() {
        let body = br#"{"sid":"SM1","status":"undelivered","error_code":30003,"to":"+1555"}"#;
        let fields = resource_fields(body).expect("fields");
        let event = crate::twilio::parse(&fields, body).expect("parses");
        assert_eq!(event.event_key, "SM1:undelivered");
        assert_eq!(event.target, Some(crate::event::Target::Undelivered));
        assert!(event.reason.as_deref().is_some_and(|r| r.contains("30003")));
        let no_code = resource_fields(br#"{"sid":"SM2","status":"delivered","error_code":null}"#)
            .expect("fields");
        assert_eq!(no_code.fields.len(), 2);
        assert!(resource_fields(br#"{"sid":"SM3"}"#).is_none());
    }

    #[test]
    fn the_interval_is_a_tenth_of_the_wait_within_bounds() {
        assert_eq!(interval(Duration::from_secs(600)), Duration::from_secs(60));
        assert_eq!(interval(Duration::from_secs(100)), Duration::from_secs(10));
        assert_eq!(interval(Duration::from_secs(2)), Duration::from_secs(1));
    }
}
