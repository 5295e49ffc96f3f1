//! Who a notice goes to, one page at a time: the affected clients' contacts in `(client, contact)`
//! order from a cursor, and what each of them gets (the send requests) or why not (the skips).
//!
//! A page is read by keyset: the affected clients from the cursor's client on, and for each the
//! contacts after the cursor through `contacts (client_id, id)`, so a page costs only its own
//! rows however many targets remain (re-sorting every remaining target per page made a 100 000-
//! recipient fan-out quadratic, docs/benchmarks.md).

use std::collections::BTreeMap;

use sqlx::PgPool;
use uuid::Uuid;

/// One affected contact (or a client without any: `contact_id` empty) and its consent per channel.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Target {
    pub(crate) client_id: Uuid,
    pub(crate) contact_id: Option<Uuid>,
    /// The client's first contact, who carries the client's one portal update.
    first: bool,
    sms: Option<String>,
    email: Option<String>,
    portal: Option<String>,
}

impl Target {
    /// Where the next page starts after this target.
    pub(crate) fn cursor(&self) -> (Uuid, Uuid) {
        (self.client_id, self.contact_id.unwrap_or(Uuid::nil()))
    }
}

/// A target not sent to: client, contact, channel, reason.
pub(crate) type Skip = (Uuid, Option<Uuid>, &'static str, String);

/// The next `limit` targets of `incident` after `cursor`, in `(client, contact)` order; a client
/// without contacts is one target with no contact, ordered before any contact of it would be.
pub(crate) async fn page(
    pool: &PgPool,
    incident: Uuid,
    cursor: (Uuid, Uuid),
    limit: i64,
) -> Result<Vec<Target>, sqlx::Error> {
    sqlx::query_as(
        "SELECT ic.client_id, c.id AS contact_id, COALESCE(c.first, false) AS first,
                s.consent_state AS sms, e.consent_state AS email, p.consent_state AS portal
         FROM (SELECT client_id FROM comms.incident_clients
               WHERE incident_id = $1 AND client_id >= $2
               ORDER BY client_id LIMIT $4) ic
         LEFT JOIN LATERAL (
             SELECT c.id, NOT EXISTS (SELECT 1 FROM comms.contacts o
                                      WHERE o.client_id = c.client_id AND o.id < c.id) AS first
             FROM comms.contacts c
             WHERE c.client_id = ic.client_id AND (ic.client_id > $2 OR c.id > $3)
             ORDER BY c.id LIMIT $4) c ON true
         LEFT JOIN comms.contact_channels s ON s.contact_id = c.id AND s.channel = 'sms'
         LEFT JOIN comms.contact_channels e ON e.contact_id = c.id AND e.channel = 'email'
         LEFT JOIN comms.contact_channels p ON p.contact_id = c.id AND p.channel = 'portal'
         WHERE ic.client_id > $2 OR c.id IS NOT NULL
         ORDER BY ic.client_id, c.id NULLS FIRST
         LIMIT $4",
    )
    .bind(incident)
    .bind(cursor.0)
    .bind(cursor.1)
    .bind(limit)
    // Planned with this page's values every time: a generic (cached) plan cannot see the limit,
    // so it read every contact of up to `limit` clients and sorted them all (3 s a page for
    // 100 contacts a client) instead of stopping at the page's end (an incremental sort).
    .persistent(false)
    .fetch_all(pool)
    .await
}

/// What a page comes to: `(contact, channel)` of every request to publish, the skips with their
/// reasons, and the requests per channel.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) sends: Vec<(Uuid, &'static str)>,
    pub(crate) skips: Vec<Skip>,
    pub(crate) counts: BTreeMap<&'static str, i32>,
}

/// Decides each target's channels: SMS and email where the contact has an address, the client's
/// portal update with its first contact; opted-out and suppressed channels are skipped with that
/// reason, a contact with no address at all as `no_address`, a client with no contact as
/// `no_contact`.
pub(crate) fn plan(targets: &[Target]) -> Plan {
    let mut plan = Plan::default();
    let no_portal_row = String::new();
    for target in targets {
        let Some(contact) = target.contact_id else {
            plan.skips
                .push((target.client_id, None, "portal", "no_contact".into()));
            continue;
        };
        let mut channels: Vec<(&'static str, Option<&String>)> = vec![
            ("sms", target.sms.as_ref()),
            ("email", target.email.as_ref()),
        ];
        if target.first {
            // One portal update per client; a contact needs no portal address for it.
            channels.push((
                "portal",
                Some(target.portal.as_ref().unwrap_or(&no_portal_row)),
            ));
        }
        if target.sms.is_none() && target.email.is_none() && !target.first {
            plan.skips
                .push((target.client_id, Some(contact), "sms", "no_address".into()));
        }
        for (channel, consent) in channels {
            let Some(consent) = consent else { continue };
            if matches!(consent.as_str(), "opted_out" | "suppressed") {
                plan.skips
                    .push((target.client_id, Some(contact), channel, consent.clone()));
                continue;
            }
            plan.sends.push((contact, channel));
            *plan.counts.entry(channel).or_default() += 1;
        }
    }
    plan
}
