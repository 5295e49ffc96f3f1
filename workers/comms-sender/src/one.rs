//! What the sender does with one send request: validate, record, preflight, wait for the rate
//! limit, check the pause switch, claim, dispatch, record the outcome.
//!
//! The order is the contract: nothing reaches a provider without passing every step, the pause
//! check is the last thing before the provider call, and the claim (a conditional state change to
//! `sending`) guarantees that two deliveries of one message cannot both dispatch it.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use comms_domain::contract::{Kind, ValidSendRequest};
use comms_domain::messages::DeliveryState;
use comms_domain::pause::switch::Verdict;
use comms_domain::{digests, incidents};
use comms_runtime::runtime::{Incoming, Outcome};

use crate::outcomes;
use crate::portal_safe;
use crate::preflight::{self, Refusal};
use crate::providers::{Dispatch, Outbound};
use crate::render::{self, RenderError};
use crate::sender::{SendHandler, stage};
use crate::store::{self, DISPATCHABLE, Event, Message, RecordError, Transition};

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
    async fn process(&self, request: &ValidSendRequest) -> Result<Outcome, sqlx::Error> {
        let t = std::time::Instant::now();
        let (message, _created) =
            match store::record(&self.pool, request, &self.settings.privacy.hash_key).await {
                Ok(recorded) => recorded,
                Err(RecordError::Db(error)) => return Err(error),
                Err(refused) => return Ok(Outcome::reject(format!("invalid_request: {refused}"))),
            };
        tracing::info!(message.id = %message.id, message.key = %message.idempotency_key, message.state = %message.delivery_state, "send request");
        if message.delivery_state == DeliveryState::Sending.as_str() {
            return outcomes::recover_sending(self, &message).await;
        }
        if !DeliveryState::DISPATCHABLE_NAMES.contains(&message.delivery_state.as_str()) {
            // Already sent, failed or blocked: a redelivery or a duplicate request changes nothing.
            return Ok(Outcome::Ack);
        }

        let t = stage("record", t);
        let client_id =
            match preflight::record_client(&self.pool, request, message.contact_id).await? {
                Ok(client_id) => client_id,
                Err(refusal) => return outcomes::block(self, &message, refusal).await,
            };
        if let Err(refusal) = preflight::consent(
            &self.pool,
            &message,
            request,
            &self.settings.replies.opt_out_template,
        )
        .await?
        {
            return outcomes::block(self, &message, refusal).await;
        }
        let t = stage("preflight", t);
        // A review request carries its tracked link (signed over this message's id).
        let linked = crate::review_link::attach(
            &self.pool,
            &self.settings,
            request,
            message.id,
            client_id,
            self.clock.now(),
        )
        .await?;
        let rendered = match render::render(&self.pool, linked.as_ref().unwrap_or(request)).await {
            Ok(rendered) => rendered,
            Err(RenderError::Db(error)) => return Err(error),
            Err(error) => {
                let missing =
                    crate::review_link::missing_destination(&self.pool, request, linked.is_some())
                        .await?;
                if let Some(refusal) = missing {
                    return outcomes::block(self, &message, refusal).await;
                }
                let refusal = Refusal {
                    code: error.code(),
                    detail: error.to_string(),
                    next_action: "fix the template or the request's variables, then send again",
                };
                return outcomes::block(self, &message, refusal).await;
            }
        };
        store::save_rendered(&self.pool, message.id, &rendered, client_id).await?;
        let t = stage("render", t);

        // Portal-visible wording is checked before anyone is asked to approve it.
        if portal_safe::applies(request) {
            let wording = portal_safe::Wording {
                kind: request.kind,
                contains_roi: request.contains_roi,
                subject: rendered.subject.as_deref(),
                body: &rendered.body,
            };
            let problems = portal_safe::check(&wording, self.settings.approvals.portal_max_chars);
            if !problems.is_empty() {
                return outcomes::portal_unsafe(self, &message, &problems).await;
            }
        }

        let hash = preflight::content_hash(&rendered);
        if request.ai_draft {
            let review = preflight::decision(&self.pool, message.id, &hash, true).await?;
            if review.as_deref() != Some("reviewed_safe") {
                return outcomes::await_approval(self, &message, "ai_draft_needs_review", &hash)
                    .await;
            }
        }
        if preflight::needs_approval(request) {
            let mut decision = preflight::decision(&self.pool, message.id, &hash, false).await?;
            if decision.is_none() && request.kind == Kind::IncidentNotice {
                // One decision covers a whole incident notice (docs/incidents.md).
                decision =
                    incidents::notice_clearance(&self.pool, &request.idempotency_key).await?;
            }
            if decision.is_none() && request.kind == Kind::ReportDigest {
                // The digest's approval covers its sends, if the wording is exactly it (docs/digests.md).
                decision = digests::send_clearance(
                    &self.pool,
                    &request.idempotency_key,
                    rendered.subject.as_deref(),
                    &rendered.body,
                )
                .await?;
            }
            match decision.as_deref() {
                Some("approved") => {}
                Some(decision) => {
                    let refusal = Refusal {
                        code: if decision == "expired" {
                            "approval_expired"
                        } else {
                            "approval_rejected"
                        },
                        detail: format!("the owner's approval was {decision}"),
                        next_action: "revise the message and request approval again",
                    };
                    return outcomes::block(self, &message, refusal).await;
                }
                None => {
                    return outcomes::await_approval(self, &message, "approval_required", &hash)
                        .await;
                }
            }
        }

        let t = stage("approval", t);
        let now = self.clock.now();
        if let Some(after) = message.send_after.filter(|at| *at > now) {
            return outcomes::defer(self, &message, after, now, "send_after").await;
        }
        if let Some(opening) = self.quiet_hours(&message, request, now).await? {
            return outcomes::defer(self, &message, opening, now, "quiet_hours").await;
        }

        let account = self.providers.account(&message.channel);
        self.limits.until_ready(&message.channel, &account).await;

        let t = stage("timing_rate", t);
        if self.older_release_pending(&message).await? {
            return Ok(Outcome::Defer {
                after: std::time::Duration::from_secs(1),
                reason: "an older released message to this recipient goes first".into(),
            });
        }

        // The pause switch, immediately before the provider call. The guard is held until the
        // outcome is recorded, so a pause applied by this worker waits for this dispatch.
        // A notice of an incident passes the client pauses that incident caused, nothing else.
        let exempt = preflight::incident_exemption(request);
        // A step of an outreach sequence is held by a `sequence:<name>` pause too.
        let sequence = comms_domain::pause::sequence_of_trigger(&request.trigger);
        let (_dispatching, verdict) = self
            .switch
            .enter_except(&message.channel, &message.kind, client_id, exempt, sequence)
            .await;
        let t = stage("pause_gate", t);
        match verdict {
            Verdict::Clear => {}
            Verdict::Paused(pause) => return outcomes::hold(self, &message, &pause).await,
            Verdict::Blind { stale_for } => {
                tracing::warn!(message.id = %message.id, stale_for_ms = stale_for.map(|d| d.as_millis() as u64), "pause switch unconfirmed: not sending (blind)");
                return Ok(Outcome::Defer {
                    after: std::time::Duration::from_secs(1),
                    reason: "blind: the pause switch could not be confirmed".into(),
                });
            }
        }
        let claim = Transition {
            attempt_delta: 1,
            ..Transition::new(
                DISPATCHABLE,
                DeliveryState::Sending,
                Event::new("dispatching", format!("dispatching through {account}"))
                    .recovery("if the outcome is never recorded, the message is failed as dispatch_outcome_unknown for the owner to check"),
            )
        };
        let Some(attempt) = store::transition(&self.pool, &message, claim).await? else {
            return Ok(Outcome::Ack);
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
            return outcomes::hold_claimed(self, &message, &pause).await;
        }
        let outbound = Outbound {
            message_id: message.id,
            channel: message.channel.clone(),
            kind: message.kind.clone(),
            contact_id: message.contact_id,
            client_id,
            to: message.recipient_address.clone(),
            subject: rendered.subject.clone(),
            body: rendered.body.clone(),
        };
        let dispatch: Dispatch = self.providers.dispatch(&outbound).await;
        let t = stage("provider", t);
        match &dispatch {
            Dispatch::Transient { reason, .. } => {
                self.breaker
                    .failure(&self.pool, &self.switch, &message.channel, reason)
                    .await;
            }
            _ => self.breaker.success(&message.channel),
        }
        let outcome = outcomes::record_dispatch(self, &message, attempt, dispatch).await;
        stage("outcome", t);
        outcome
    }

    /// Released messages keep their order per recipient: one waits while an older released
    /// message to the same address and channel is still on its way.
    async fn older_release_pending(&self, message: &Message) -> Result<bool, sqlx::Error> {
        if message.held_by_pause.is_none() {
            return Ok(false);
        }
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM comms.messages
                 WHERE contact_id = $1 AND channel = $2 AND held_by_pause IS NOT NULL
                   AND delivery_state IN ('held', 'received', 'retrying', 'deferred', 'sending')
                   AND (created_at, id) < ($3, $4))",
        )
        .bind(message.contact_id)
        .bind(&message.channel)
        .bind(message.created_at)
        .bind(message.id)
        .fetch_one(&self.pool)
        .await
    }

    /// For outreach and review-request SMS outside the recipient's daytime: when to try again.
    async fn quiet_hours(
        &self,
        message: &Message,
        request: &ValidSendRequest,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        use comms_domain::contract::{Channel, Kind};
        if request.channel != Channel::Sms
            || !matches!(request.kind, Kind::Outreach | Kind::ReviewRequest)
        {
            return Ok(None);
        }
        let stored: Option<String> =
            sqlx::query_scalar("SELECT time_zone FROM comms.contacts WHERE id = $1")
                .bind(message.contact_id)
                .fetch_one(&self.pool)
                .await?;
        let zone = stored
            .and_then(|z| z.parse::<Tz>().ok())
            .or(request.recipient.time_zone())
            .unwrap_or(self.default_zone);
        Ok(self.window.next_opening(now, zone))
    }
}
