//! Who a notice goes to, one page at a time: the affected clients' contacts in `(client, contact)`
//! order from a cursor, and what each of them gets (the send requests) or why not (the skips).
//!
//! A page is read by keyset: a few affected clients from the cursor's client on, and for each the
//! contacts after the cursor through `contacts (client_id, id)`, so a page costs about its own
//! rows however many targets remain (re-sorting every remaining target per page made a 100 000-
//! recipient fan-out quadratic, docs/benchmarks.md). [`Pages`] adapts how many clients a page
//! reads to how many contacts they have.

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
    /// How many affected clients the page query read (the same on every row of a page).
    clients_read: i64,
}

impl Target {
    /// Where the next page starts after this target.
    pub(crate) fn cursor(&self) -> (Uuid, Uuid) {
        (self.client_id, self.contact_id.unwrap_or(Uuid::nil()))
    }
}

/// A target not sent to: client, contact, channel, reason.
pub(crate) type Skip = (Uuid, Option<Uuid>, &'static str, String);

/// Reads one notice's targets page by page. A page query reads only a few affected clients
/// (starting from what the previous page needed, doubling while the page is not full), so its
/// cost follows the page, not the audience, whatever the planner's statistics say: the first
/// shape read up to `limit` clients with all their contacts and sorted them, which a freshly
/// declared incident (its client links not yet analysed) made 1.3 s a page at 100 contacts a
/// client (docs/benchmarks.md).
pub(crate) struct Pages {
    incident: Uuid,
    limit: i64,
    /// Affected clients the next page query reads, at least 2 (so that an empty answer means
    /// no client is left, even when the cursor's own client has no contact left).
    clients: i64,
}

impl Pages {
    pub(crate) fn new(incident: Uuid, limit: i64) -> Self {
        Self {
            incident,
            limit: limit.max(1),
            clients: 2,
        }
    }

    /// The next `limit` targets after `cursor`, in `(client, contact)` order; a client without
    /// contacts is one target with no contact, ordered before any contact of it would be. A page
    /// shorter than `limit` means no target is left.
    pub(crate) async fn after(
        &mut self,
        pool: &PgPool,
        cursor: (Uuid, Uuid),
    ) -> Result<Vec<Target>, sqlx::Error> {
        loop {
            let page = page(pool, self.incident, cursor, self.clients, self.limit).await?;
            let full = page.len() as i64 >= self.limit;
            // Every client read yields at least one target except the cursor's own, so fewer
            // clients read than asked for means none is left (an empty page: none was read).
            let clients_read = page.first().map_or(0, |t| t.clients_read);
            let exhausted = clients_read < self.clients;
            if full || exhausted || self.clients > self.limit {
                let mut distinct: Vec<Uuid> = page.iter().map(|t| t.client_id).collect();
                distinct.dedup();
                self.clients = (distinct.len() as i64 + 1).max(2);
                return Ok(page);
            }
            self.clients = (self.clients * 2).min(self.limit + 1);
        }
    }
}

/// At most `limit` targets after `cursor` among the next `clients` affected clients.
async fn page(
    pool: &PgPool,
    incident: Uuid,
    cursor: (Uuid, Uuid),
    clients: i64,
    limit: i64,
) -> Result<Vec<Target>, sqlx::Error> {
    sqlx::query_as(
        "WITH ic AS MATERIALIZED (
             SELECT client_id FROM comms.incident_clients
             WHERE incident_id = $1 AND client_id >= $2
             ORDER BY client_id LIMIT $5),
         page AS MATERIALIZED (
             SELECT ic.client_id, c.id AS contact_id
             FROM ic
             LEFT JOIN LATERAL (
                 SELECT c.id FROM comms.contacts c
                 WHERE c.client_id = ic.client_id AND (ic.client_id > $2 OR c.id > $3)
                 ORDER BY c.id LIMIT $4) c ON true
             WHERE ic.client_id > $2 OR c.id IS NOT NULL
             ORDER BY ic.client_id, c.id NULLS FIRST
             LIMIT $4)
         SELECT page.client_id, page.contact_id,
                page.contact_id IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM comms.contacts o
                    WHERE o.client_id = page.client_id AND o.id < page.contact_id) AS first,
                s.consent_state AS sms, e.consent_state AS email, p.consent_state AS portal,
                (SELECT count(*) FROM ic) AS clients_read
         FROM page
         LEFT JOIN comms.contact_channels s ON s.contact_id = page.contact_id AND s.channel = 'sms'
         LEFT JOIN comms.contact_channels e ON e.contact_id = page.contact_id AND e.channel = 'email'
         LEFT JOIN comms.contact_channels p ON p.contact_id = page.contact_id AND p.channel = 'portal'
         ORDER BY page.client_id, page.contact_id NULLS FIRST",
    )
    .bind(incident)
    .bind(cursor.0)
    .bind(cursor.1)
    .bind(limit)
    .bind(clients)
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
