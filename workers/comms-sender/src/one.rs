//! What the sender does with one send request: validate, record, load its facts, decide
//! ([`crate::rules`]), then settle the decision ([`crate::settle`]) or wait for the rate limit,
//! pass the gate (the pause switch), claim, dispatch, record the outcome.
//!
//! The order is the contract: nothing reaches a provider without passing every step, the pause
//! check is the last thing before the provider call, and the claim (a conditional state change to
//! `sending`) guarantees that two deliveries of one message cannot both dispatch it. The claim
//! also marks the provider call as started (nothing is awaited between the two), so a message
//! found in `sending` later may have reached the provider; one found claimed by a group whose
//! calls never started is released and sent again ([`crate::rules`]'s `in_flight`).

use chrono::{DateTime, Utc};
use comms_domain::contract::ValidSendRequest;
use comms_domain::messages::DeliveryState;
use comms_domain::pause::release::OLDER_RELEASE_PENDING;
use comms_runtime::runtime::{Incoming, Outcome};

use crate::outcomes;
use crate::providers::{Dispatch, Outbound, Routed};
use crate::rules::facts::{self, Member};
use crate::rules::{self, Book, Decision, Prepared};
use crate::sender::{SendHandler, stage};
use crate::settle;
use crate::store::{
    self, DISPATCH_RECOVERY, DISPATCHABLE, Event, Message, RecordError, Transition,
};
use comms_domain::messages::ledger;
use uuid::Uuid;

/// Decides one delivery: its request is read and validated, then [`process`]ed.
pub(crate) async fn handle(sender: &SendHandler, incoming: &Incoming) -> Outcome {
    let request = match crate::intake::accept(incoming) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    match sender.process(&request).await {
        Ok(outcome) => outcome,
        // Retried when the database was unavailable; rejected when it refused this message.
        Err(error) => comms_runtime::db_error::outcome(&error),
    }
}

impl SendHandler {
    /// The rules this sender applies, with its settings.
    pub(crate) fn book(&self) -> Book<'_> {
        Book {
            settings: &self.settings,
            window: self.window,
            default_zone: self.default_zone,
        }
    }

    /// Records the request's message, loads its facts, decides, and settles or sends it. A
    /// message found held by a claim whose provider call never started is released from it and
    /// decided again (once: should another claim have been left unstarted meanwhile, the
    /// delivery comes back).
    async fn process(&self, request: &ValidSendRequest) -> Result<Outcome, sqlx::Error> {
        for _ in 0..2 {
            if let Some(outcome) = self.process_once(request).await? {
                return Ok(outcome);
            }
        }
        Ok(Outcome::retry("its claim was released twice in a row"))
    }

    /// One pass of [`Self::process`]: the outcome, or `None` when the message was released from
    /// a claim whose call never started and must be decided again.
    async fn process_once(
        &self,
        request: &ValidSendRequest,
    ) -> Result<Option<Outcome>, sqlx::Error> {
        let t = std::time::Instant::now();
        let (message, _created) =
            match store::record(&self.pool, request, &self.settings.privacy.hash_key).await {
                Ok(recorded) => recorded,
                Err(RecordError::Db(error)) => return Err(error),
                Err(refused) => {
                    return Ok(Some(Outcome::reject(format!("invalid_request: {refused}"))));
                }
            };
        tracing::info!(message.id = %message.id, message.key = %message.idempotency_key, message.state = %message.delivery_state, "send request");
        let t = stage("record", t);
        let member = Member {
            request,
            message: Some(&message),
        };
        let facts = facts::load(&self.pool, &[member]).await?;
        let facts = facts.into_iter().next().unwrap_or_default();
        let t = stage("preflight", t);
        let now = self.clock.now();
        let decision = self.book().decide(request, &facts, now);
        if let Some(prepared) = decision.prepared() {
            settle::keep_prepared(&self.pool, &message, request, prepared).await?;
        }
        let t = stage("render", t);
        match decision {
            Decision::Dispatch(prepared) => self.send(request, &message, prepared, now, t).await,
            Decision::Redispatch { claim } => {
                let released =
                    ledger::calls::release_unstarted(&self.pool, message.id, claim, store::ACTOR)
                        .await?;
                if released {
                    tracing::info!(message.id = %message.id, "claimed by a process that stopped before its provider call; sending it again");
                }
                // Released, or its call was marked meanwhile: decided again either way.
                return Ok(None);
            }
            decision => settle::settle(self, &message, decision, now).await,
        }
        .map(Some)
    }

    /// A message every rule let through: waits for its rate token, passes the gate (the order of
    /// released messages and the pause switch), is claimed and dispatched.
    async fn send(
        &self,
        request: &ValidSendRequest,
        message: &Message,
        prepared: Prepared,
        now: DateTime<Utc>,
        t: std::time::Instant,
    ) -> Result<Outcome, sqlx::Error> {
        // The provider first: the rate limit is its account's, the claim's event names it. A
        // message whose last attempt may have reached a provider goes there or nowhere.
        let pinned = store::pinned_provider(&self.pool, message).await?;
        let retry = message.delivery_state == DeliveryState::Retrying.as_str();
        let pin = pinned.as_ref().map(|p| p.provider.as_str());
        let route = match self.providers.route(&message.channel, pin, retry) {
            Routed::To(route) => route,
            Routed::Away { provider } => {
                let age = pinned.map(|p| p.age).unwrap_or_default();
                return outcomes::pinned_away(self, message, &provider, age).await;
            }
        };
        let account = route.account.clone();
        self.limits.until_ready(&message.channel, &account).await;
        let t = stage("timing_rate", t);
        let older_release_pending = self.older_release_pending(message).await?;
        // The pause switch, immediately before the provider call. The guard is held until the
        // outcome is recorded, so a pause applied by this worker waits for this dispatch.
        // A notice of an incident passes the client pauses that incident caused, nothing else.
        let exempt = rules::incident_exemption(request);
        // A step of an outreach sequence is held by a `sequence:<name>` pause too.
        let sequence = comms_domain::pause::sequence_of_trigger(&request.trigger);
        let client_id = prepared.client_id;
        let (_dispatching, verdict) = self
            .switch
            .enter_except(&message.channel, &message.kind, client_id, exempt, sequence)
            .await;
        let t = stage("pause_gate", t);
        let decision = self.book().gate(prepared, older_release_pending, verdict);
        let Decision::Send(Prepared {
            content: Some(rendered),
            ..
        }) = decision
        else {
            return settle::settle(self, message, decision, now).await;
        };
        // Nothing is awaited between this claim's commit and the provider call (the pause check
        // below reads memory), so the claim is also the call's mark: committed before any byte
        // goes to the provider, and the message is never found claimed with its call not started.
        let claim_id = Uuid::new_v4();
        let claim = Transition {
            attempt_delta: 1,
            claim: Some(claim_id),
            call_started: true,
            ..Transition::new(
                DISPATCHABLE,
                DeliveryState::Sending,
                Event::new("dispatching", route.describe())
                    .recovery(DISPATCH_RECOVERY)
                    .detail(route.detail()),
            )
        };
        let attempt = match store::transition(&self.pool, message, claim).await {
            Ok(Some(attempt)) => attempt,
            Ok(None) => return Ok(Outcome::Ack),
            // It may have committed all the same; no call was made, so it is released.
            Err(error) if comms_runtime::db_error::is_transient(&error) => {
                crate::answer_kept::release_unconfirmed_claim(&self.pool, &self.settings, claim_id)
                    .await;
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        // Every later move of this dispatch is made only while this claim holds the message.
        let message = &Message {
            delivery_state: DeliveryState::Sending.as_str().into(),
            dispatch_claim: Some(claim_id),
            ..message.clone()
        };
        let t = stage("claim", t);
        // A pause read while this dispatch was claiming: stop here, before the provider.
        if let Some(pause) = self.switch.pending_cover_except(
            &message.channel,
            &message.kind,
            client_id,
            exempt,
            sequence,
        ) {
            return outcomes::hold_claimed(self, message, &pause).await;
        }
        let outbound = Outbound {
            message_id: message.id,
            channel: message.channel.clone(),
            kind: message.kind.clone(),
            contact_id: message.contact_id,
            client_id,
            to: message.recipient_address.clone(),
            subject: rendered.subject,
            body: rendered.body,
        };
        let dispatch: Dispatch = self.providers.dispatch_via(&route, &outbound).await;
        let t = stage("provider", t);
        match &dispatch {
            Dispatch::Transient { reason, .. } => {
                self.breaker
                    .failure(&self.pool, &self.switch, &message.channel, reason)
                    .await;
            }
            _ => self.breaker.success(&message.channel),
        }
        let outcome = outcomes::record_dispatch(self, message, attempt, dispatch, route.name).await;
        stage("outcome", t);
        outcome
    }

    /// Released messages keep their order per recipient: one waits while an older released
    /// message to the same address and channel is still on its way.
    async fn older_release_pending(&self, message: &Message) -> Result<bool, sqlx::Error> {
        if message.held_by_pause.is_none() {
            return Ok(false);
        }
        sqlx::query_scalar(&format!(
            "SELECT {OLDER_RELEASE_PENDING} FROM comms.messages m WHERE m.id = $1"
        ))
        .bind(message.id)
        .fetch_optional(&self.pool)
        .await
        .map(|pending| pending.unwrap_or(false))
    }
}
