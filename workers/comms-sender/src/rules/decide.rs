//! [`Book::decide`] and [`Book::gate`]: the rules, pure, in the order they apply. Nothing here
//! reads the database, the clock or the pause switch: the caller hands in [`Facts`], the time
//! and the switch's verdict, so every rule is tested without any of them (`rules/tests.rs`).
//!
//! The order is the contract: the message's recorded state, the record's client, consent, the
//! content (review link, template, rendering), the portal-safe wording, the AI-draft review and
//! the owner's approval, `send_after`, quiet hours; then, after the rate limit, the order of
//! released messages and the pause switch, the last thing before the provider call.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use comms_domain::contract::{Channel, Kind, RecordType, ValidSendRequest};
use comms_domain::outcomes::review_link;
use comms_domain::pause::switch::Verdict;
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{Book, Decision, Facts, Prepared, Refusal};
use crate::portal_safe;
use crate::render::{self, Rendered};
use comms_domain::messages::DeliveryState;

impl Book<'_> {
    /// What happens to `request` given `facts`, at `now`: a refusal, a wait or
    /// [`Decision::Dispatch`] when every rule before the rate limit and the pause switch passed.
    pub fn decide(
        &self,
        request: &ValidSendRequest,
        facts: &Facts,
        now: DateTime<Utc>,
    ) -> Decision {
        if let Some(message) = &facts.message {
            if message.delivery_state == "sending" {
                return self.in_flight(facts);
            }
            if !DeliveryState::DISPATCHABLE_NAMES.contains(&message.delivery_state.as_str()) {
                return Decision::Settled;
            }
        }
        let Some(client_id) = facts.record_client else {
            let refusal = Refusal {
                code: "record_not_found",
                detail: format!(
                    "{} {} does not exist",
                    request.record.record_type, request.record.id
                ),
                next_action: "attach the message to an existing record and send it again",
            };
            return Decision::Block {
                refusal,
                prepared: None,
            };
        };
        let keep_consent = match self.consent(request, facts) {
            Ok(keep) => keep,
            Err(refusal) => {
                return Decision::Block {
                    refusal,
                    prepared: None,
                };
            }
        };
        let mut prepared = Prepared {
            client_id,
            keep_consent,
            content: None,
        };
        let rendered = match self.render(request, facts, client_id, now) {
            Ok(rendered) => rendered,
            Err(refusal) => {
                return Decision::Block {
                    refusal,
                    prepared: Some(prepared),
                };
            }
        };
        let problems = self.portal_problems(request, &rendered);
        let hash = content_hash(&rendered);
        let approval = approval(request, facts, &hash, &rendered);
        prepared.content = Some(rendered);
        if !problems.is_empty() {
            return Decision::PortalUnsafe { problems, prepared };
        }
        match approval {
            Ok(()) => {}
            Err(Wait(reason)) => {
                return Decision::AwaitApproval {
                    reason,
                    hash,
                    prepared,
                };
            }
            Err(Refused(refusal)) => {
                return Decision::Block {
                    refusal,
                    prepared: Some(prepared),
                };
            }
        }
        // A recorded message keeps the time it was last deferred to; a new one has the request's.
        let send_after = facts
            .message
            .as_ref()
            .map_or(request.send_after, |m| m.send_after);
        if let Some(until) = send_after.filter(|at| *at > now) {
            return Decision::Defer {
                until,
                reason: "send_after",
                prepared,
            };
        }
        if let Some(until) = self.quiet_hours(request, facts, now) {
            return Decision::Defer {
                until,
                reason: "quiet_hours",
                prepared,
            };
        }
        Decision::Dispatch(prepared)
    }

    /// The last rules, after the rate limit: released messages keep their order per recipient,
    /// and the pause switch's `verdict` (read immediately before the provider call) is obeyed.
    pub fn gate(
        &self,
        prepared: Prepared,
        older_release_pending: bool,
        verdict: Verdict,
    ) -> Decision {
        if older_release_pending {
            return Decision::WaitForOlder;
        }
        match verdict {
            Verdict::Clear => Decision::Send(prepared),
            Verdict::Paused(pause) => Decision::Hold(pause),
            Verdict::Blind { stale_for } => Decision::Blind { stale_for },
        }
    }

    /// Consent on the message's channel: opted-out and suppressed contacts are never sent to, and
    /// outreach and review requests need recorded express consent (taken from the request if it
    /// carries it, and then kept on the contact: `Ok(true)`).
    fn consent(&self, request: &ValidSendRequest, facts: &Facts) -> Result<bool, Refusal> {
        let state = facts
            .contact
            .as_ref()
            .and_then(|c| c.consent_state.as_deref())
            .unwrap_or("unknown");
        let channel = request.channel.as_str();
        // The one message an opted-out contact still gets: the confirmation of that opt-out.
        let is_confirmation = request.kind == Kind::Transactional
            && request.template.name == self.settings.replies.opt_out_template
            && request.channel == Channel::Sms;
        match state {
            "opted_out" if is_confirmation => return Ok(false),
            "opted_out" => {
                return Err(Refusal {
                    code: "opted_out",
                    detail: format!("the contact opted out of {channel}"),
                    next_action: "do not contact on this channel unless the contact opts back in",
                });
            }
            "suppressed" => {
                return Err(Refusal {
                    code: "suppressed",
                    detail: format!("the {channel} address is suppressed (bounce or complaint)"),
                    next_action: "get a working address from the contact",
                });
            }
            _ => {}
        }
        if !matches!(request.kind, Kind::Outreach | Kind::ReviewRequest) || state == "express" {
            return Ok(false);
        }
        if request.consent.is_some() && request.has_express_consent() {
            return Ok(true);
        }
        Err(Refusal {
            code: "consent_missing",
            detail: format!("{} needs recorded express consent", request.kind),
            next_action: "record the contact's express consent, then send again",
        })
    }

    /// The content: the template version rendered strictly with the request's variables (and,
    /// for a review request whose client has a review destination, its tracked link, signed over
    /// the message's id).
    fn render(
        &self,
        request: &ValidSendRequest,
        facts: &Facts,
        client_id: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<Rendered, Refusal> {
        let link = match (&facts.message, client_id) {
            (Some(message), Some(_))
                if request.kind == Kind::ReviewRequest && facts.review_destination =>
            {
                let sequences = &self.settings.sequences;
                let ttl = chrono::Duration::from_std(sequences.review_link_ttl)
                    .unwrap_or(chrono::Duration::days(90));
                Some(review_link::url(
                    &self.settings.gateway.public_url,
                    sequences.review_link_secret.expose_secret().as_bytes(),
                    message.id,
                    now + ttl,
                ))
            }
            _ => None,
        };
        let linked = link.map(|url| with_link(request, url));
        let template = facts.template.as_ref();
        let error = match render::render_row(template, linked.as_ref().unwrap_or(request)) {
            Ok(rendered) => return Ok(rendered),
            Err(error) => error,
        };
        // A review request without a link whose template renders once a link is there: the
        // missing review destination is why.
        let probe = || with_link(request, "https://example.invalid/".into());
        if request.kind == Kind::ReviewRequest
            && linked.is_none()
            && render::render_row(template, &probe()).is_ok()
        {
            return Err(Refusal {
                code: "review_destination_missing",
                detail: "the template uses review_url and the client has no review destination"
                    .into(),
                next_action: "set the client's review destination (commsctl reviews destination), then send again",
            });
        }
        Err(Refusal {
            code: error.code(),
            detail: error.to_string(),
            next_action: "fix the template or the request's variables, then send again",
        })
    }

    /// Portal-visible wording is checked before anyone is asked to approve it.
    fn portal_problems(
        &self,
        request: &ValidSendRequest,
        rendered: &Rendered,
    ) -> Vec<portal_safe::Problem> {
        if !portal_safe::applies(request) {
            return Vec::new();
        }
        let wording = portal_safe::Wording {
            kind: request.kind,
            contains_roi: request.contains_roi,
            subject: rendered.subject.as_deref(),
            body: &rendered.body,
        };
        portal_safe::check(&wording, self.settings.approvals.portal_max_chars)
    }

    /// Outreach and review-request SMS outside the recipient's daytime: when the window opens.
    fn quiet_hours(
        &self,
        request: &ValidSendRequest,
        facts: &Facts,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if request.channel != Channel::Sms
            || !matches!(request.kind, Kind::Outreach | Kind::ReviewRequest)
        {
            return None;
        }
        let zone = facts
            .contact
            .as_ref()
            .and_then(|c| c.time_zone.as_deref())
            .and_then(|z| z.parse::<Tz>().ok())
            .or(request.recipient.time_zone())
            .unwrap_or(self.default_zone);
        self.window.next_opening(now, zone)
    }
}

/// Why the approval step did not pass.
enum NotApproved {
    /// No decision on this content yet: the reason the message waits with.
    Wait(&'static str),
    Refused(Refusal),
}
use NotApproved::{Refused, Wait};

/// The AI-draft review and the owner's approval, on exactly this content (`hash`).
fn approval(
    request: &ValidSendRequest,
    facts: &Facts,
    hash: &str,
    rendered: &Rendered,
) -> Result<(), NotApproved> {
    let latest = |review: bool| {
        facts
            .approvals
            .iter()
            .find(|(h, d)| h == hash && (d == "reviewed_safe") == review)
            .map(|(_, d)| d.as_str())
    };
    if request.ai_draft && latest(true) != Some("reviewed_safe") {
        return Err(Wait("ai_draft_needs_review"));
    }
    if !needs_approval(request) {
        return Ok(());
    }
    let decision = latest(false)
        // One decision covers a whole incident notice (docs/incidents.md).
        .or(facts
            .notice
            .filter(|_| request.kind == Kind::IncidentNotice))
        // The digest's approval covers its sends, if the wording is exactly it (docs/digests.md).
        .or(facts
            .digest
            .as_ref()
            .filter(|d| request.kind == Kind::ReportDigest && d.cleared)
            .filter(|d| d.subject == rendered.subject && d.body == rendered.body)
            .map(|_| "approved"));
    match decision {
        Some("approved") => Ok(()),
        Some(decision) => Err(Refused(Refusal {
            code: if decision == "expired" {
                "approval_expired"
            } else {
                "approval_rejected"
            },
            detail: format!("the owner's approval was {decision}"),
            next_action: "revise the message and request approval again",
        })),
        None => Err(Wait("approval_required")),
    }
}

fn with_link(request: &ValidSendRequest, url: String) -> ValidSendRequest {
    let mut linked = request.clone();
    linked
        .template
        .vars
        .insert(review_link::VARIABLE.into(), serde_json::Value::String(url));
    linked
}

/// Whether this message may only go out with a recorded owner approval.
pub fn needs_approval(request: &ValidSendRequest) -> bool {
    request.channel == Channel::Portal
        || request.contains_roi
        || matches!(
            request.kind,
            Kind::PortalUpdate | Kind::IncidentNotice | Kind::ReportDigest | Kind::ApprovalRequest
        )
}

/// The incident whose client pauses this message passes: a notice of an incident is not held by
/// the pauses that incident caused (docs/incidents.md, "the pause rule"); nothing else is exempt.
pub fn incident_exemption(request: &ValidSendRequest) -> Option<Uuid> {
    (request.kind == Kind::IncidentNotice && request.record.record_type == RecordType::Incident)
        .then_some(request.record.id)
}

/// A fingerprint of the content an approval covers: change a word and the approval is void.
pub fn content_hash(rendered: &Rendered) -> String {
    comms_domain::approvals::approval_hash(rendered.subject.as_deref(), &rendered.body)
}
