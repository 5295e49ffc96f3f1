//! What the replies worker does with one inbound message.
//!
//! Nothing is dropped: a reply reaches the owner of the message it answers (with a task and a due
//! time) or, unmatched, the triage owner; keywords change consent at once; auto-replies are kept
//! but open no task. A redelivered inbound message is recognised by its provider id and ignored.

use std::sync::Arc;

use comms_domain::messages::ledger;
use comms_domain::messages::{OptOutState, ReplyState};
use comms_runtime::amqp::{Outgoing, Publisher, header_str};
use comms_runtime::runtime::{Handler, Incoming, Outcome};
use comms_runtime::settings::Settings;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::classify::{self, Keyword};
use crate::parse::{self, Inbound};
use crate::store::{self, Matched, NewTask};

pub struct RepliesHandler {
    pub(crate) pool: PgPool,
    pub(crate) settings: Arc<Settings>,
    pub(crate) topology: comms_runtime::topology::Topology,
    pub(crate) publisher: Mutex<Option<(lapin::Connection, Publisher)>>,
}

impl Handler for RepliesHandler {
    async fn handle(&self, incoming: &Incoming) -> Outcome {
        // The gateway's header, not the AMQP content type (which a retry hop does not keep).
        let content_type = header_str(&incoming.headers, "x-comms-content-type");
        let inbound =
            match parse::parse(&source(incoming), content_type.as_deref(), &incoming.body).await {
                Ok(inbound) => inbound,
                Err(error) => return Outcome::reject(format!("{}: {error}", error.code())),
            };
        match self.process(&inbound).await {
            Ok(outcome) => outcome,
            // Retried when the database was unavailable; rejected when it refused this reply.
            Err(ReplyError::Db(error)) => comms_runtime::db_error::outcome(&error),
            Err(error) => Outcome::retry(format!("reply not recorded yet: {error}")),
        }
    }
}

/// Where the payload came from, as `inbound.<provider>`: its routing key, or, for a delivery
/// that comes back from a retry delay tier (with the tier's routing key, `1s.<queue>`), the
/// gateway's `x-comms-provider` header. Reading the routing key alone turned every reply retried
/// after a database outage into a dead letter (`unknown inbound routing key 1s.comms.replies`).
fn source(incoming: &Incoming) -> String {
    if incoming.routing_key.starts_with("inbound.") {
        return incoming.routing_key.clone();
    }
    header_str(&incoming.headers, "x-comms-provider")
        .map_or_else(|| incoming.routing_key.clone(), |p| format!("inbound.{p}"))
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplyError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(String),
}

impl RepliesHandler {
    async fn process(&self, inbound: &Inbound) -> Result<Outcome, ReplyError> {
        let (matched, keyword) = if inbound.channel == "sms" {
            let ours = [self.settings.providers.twilio.from.as_str()];
            (
                store::match_sms(&self.pool, inbound, &ours).await?,
                classify::keyword(&inbound.body),
            )
        } else {
            (store::match_email(&self.pool, inbound).await?, None)
        };
        // A reply to a message is a step in that message's trace (docs/operations.md).
        let step = match &matched {
            Some(m) => {
                comms_runtime::trace_context::message_step("reply", m.id, m.traceparent.as_deref())
            }
            None => tracing::Span::current(),
        };
        self.capture(inbound, matched, keyword)
            .instrument(step)
            .await
    }

    /// Records the inbound message, matched (or not) and classified, with what it changes.
    async fn capture(
        &self,
        inbound: &Inbound,
        matched: Option<Matched>,
        keyword: Option<(Keyword, String)>,
    ) -> Result<Outcome, ReplyError> {
        let contact_id = match &matched {
            Some(m) => Some(m.contact_id),
            None => store::contact(&self.pool, inbound.channel, &inbound.from).await?,
        };
        let auto = inbound.channel == "email"
            && classify::is_auto_reply(&inbound.headers, &inbound.subject);
        let classification = match (&keyword, auto, &matched) {
            (Some((Keyword::OptOut, _)), _, _) => "opt_out",
            (Some((Keyword::OptIn, _)), _, _) => "opt_in",
            (Some((Keyword::Help, _)), _, _) => "help",
            (None, true, _) => "auto_reply",
            (None, false, Some(_)) => "reply",
            (None, false, None) => "unmatched",
        };
        let word = keyword.as_ref().map(|(_, w)| w.as_str());
        let source = format!("{} inbound", inbound.provider);
        let mut tx = self.pool.begin().await?;
        let Some(inbound_id) = store::insert_inbound(
            &mut tx,
            inbound,
            classification,
            word,
            matched.as_ref(),
            contact_id,
        )
        .await?
        else {
            return Ok(Outcome::Ack); // seen before
        };
        tracing::info!(inbound.id = %inbound_id, inbound.channel = inbound.channel, classification, matched = matched.is_some(), "inbound message");
        let detail = json!({ "inbound_id": inbound_id, "keyword": word });
        let m = matched.as_ref();
        match classification {
            "reply" => {
                ledger::moves::set_reply(&mut *tx, m.map(|m| m.id), ReplyState::Replied).await?;
                store::event(
                    &mut tx,
                    m,
                    "reply_received",
                    &source,
                    "the recipient replied",
                    detail,
                )
                .await?;
                let reason = if classify::mentions_stopping(&inbound.body) {
                    "the recipient replied; the reply mentions stopping: check whether it revokes consent"
                } else {
                    "the recipient replied"
                };
                let owner = m.map_or(self.settings.replies.triage_owner.as_str(), |m| {
                    m.owner.as_str()
                });
                let spec = NewTask {
                    owner,
                    title: "Reply needs a response",
                    next_action: "read the reply and answer it",
                    reason,
                    due: self.settings.replies.response_due,
                };
                store::task(&mut tx, spec, m, inbound_id).await?;
            }
            "unmatched" => {
                store::event(
                    &mut tx,
                    None,
                    "reply_unmatched",
                    &source,
                    "an inbound message matched no outbound message",
                    detail,
                )
                .await?;
                let spec = NewTask {
                    owner: &self.settings.replies.triage_owner,
                    title: "Unmatched reply needs triage",
                    next_action: "find who it is from and route it to the right owner",
                    reason: "no outbound message matched",
                    due: self.settings.replies.response_due,
                };
                store::task(&mut tx, spec, None, inbound_id).await?;
            }
            "auto_reply" => {
                if let Some(m) = m {
                    ledger::moves::set_reply(&mut *tx, Some(m.id), ReplyState::AutoReply).await?;
                }
                store::event(
                    &mut tx,
                    m,
                    "auto_reply_received",
                    &source,
                    "an automatic reply (not counted as a reply)",
                    detail,
                )
                .await?;
            }
            "opt_out" | "opt_in" => {
                let state = if classification == "opt_out" {
                    "opted_out"
                } else {
                    "express"
                };
                let (contact, changed) = store::set_sms_consent(
                    &mut tx,
                    contact_id,
                    &inbound.from,
                    state,
                    word.unwrap_or_default(),
                )
                .await?;
                if let (Some(m), true) = (m, classification == "opt_out") {
                    ledger::moves::set_opt_out(&mut *tx, m.id, OptOutState::OptedOut).await?;
                }
                let event_type = if classification == "opt_out" {
                    "opted_out"
                } else {
                    "opted_in"
                };
                let reason = format!("sms keyword {}", word.unwrap_or_default());
                store::event(&mut tx, m, event_type, &source, &reason, detail).await?;
                if classification == "opt_out" && changed {
                    // Exactly one confirmation per opt-out; its key makes a redelivery harmless.
                    let key = format!(
                        "opt-out-confirmation-{}-{}",
                        inbound.provider, inbound.provider_message_id
                    );
                    self.answer(contact, m, &key, &self.settings.replies.opt_out_template)
                        .await?;
                }
            }
            "help" => {
                store::event(
                    &mut tx,
                    m,
                    "help_requested",
                    &source,
                    "sms keyword HELP/INFO",
                    detail,
                )
                .await?;
                if let Some(contact) = contact_id {
                    let key = format!("help-{}-{}", inbound.provider, inbound.provider_message_id);
                    self.answer(contact, m, &key, &self.settings.replies.help_template)
                        .await?;
                }
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(Outcome::Ack)
    }

    /// Publishes an automatic SMS answer (help, opt-out confirmation) through the sender, so it
    /// passes every check any message passes. Published before the inbound commit: a crash
    /// between the two republishes under the same idempotency key, which the sender ignores.
    async fn answer(
        &self,
        contact: uuid::Uuid,
        matched: Option<&Matched>,
        key: &str,
        template: &str,
    ) -> Result<(), ReplyError> {
        let record = match matched {
            Some(m) => Some((m.record_type.clone(), m.record_id)),
            None => store::latest_record(&self.pool, contact).await?,
        };
        let Some((record_type, record_id)) = record else {
            tracing::warn!(contact.id = %contact, "no record to attach an automatic answer to; none sent");
            return Ok(());
        };
        let request = json!({
            "idempotency_key": key,
            "channel": "sms",
            "kind": "transactional",
            "recipient": { "contact_id": contact.to_string() },
            "template": { "name": template, "vars": {} },
            "record": { "type": record_type, "id": record_id.to_string() },
            "owner": matched.map_or(self.settings.replies.triage_owner.as_str(), |m| m.owner.as_str()),
            "source": "comms-replies",
            "trigger": "sms.keyword"
        });
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let mut link = self.publisher.lock().await;
        if link.as_ref().is_none_or(|(_, p)| !p.is_usable()) {
            let connection = comms_runtime::amqp::connect(&self.settings.amqp, "comms-replies")
                .await
                .map_err(|e| ReplyError::Broker(e.to_string()))?;
            let publisher = Publisher::open(&connection)
                .await
                .map_err(|e| ReplyError::Broker(e.to_string()))?;
            *link = Some((connection, publisher));
        }
        let Some((_, publisher)) = link.as_ref() else {
            return Err(ReplyError::Broker("no publisher".into()));
        };
        let exchange = self.topology.send_exchange();
        // The answer continues the trace of the reply that asked for it.
        let mut headers = lapin::types::FieldTable::default();
        comms_runtime::trace_context::inject_current(&mut headers);
        let published = publisher
            .publish(Outgoing {
                exchange: &exchange,
                routing_key: "send.sms",
                body: &body,
                headers,
                message_id: Some(key.to_string()),
                ..Outgoing::default()
            })
            .await;
        if let Err(error) = published {
            *link = None;
            return Err(ReplyError::Broker(error.to_string()));
        }
        Ok(())
    }
}
