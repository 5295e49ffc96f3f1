//! The reads a group of new send requests needs before any of them is recorded: which keys are
//! already recorded, contacts with their consent, the records' clients, and the template versions
//! — four statements for the whole group, side by side, instead of five per message.

use std::collections::{HashMap, HashSet};

use comms_domain::contract::{RecordType, ValidSendRequest};
use sqlx::PgPool;
use uuid::Uuid;

use crate::render::TemplateRow;

/// A contact's address on one channel and the consent recorded for it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ContactChannel {
    pub contact_id: Uuid,
    pub channel: String,
    pub address: String,
    pub consent_state: String,
}

/// What the database knows about the requests of one group.
#[derive(Debug, Default)]
pub struct Known {
    by_contact: HashMap<(Uuid, String), ContactChannel>,
    by_address: HashMap<(String, String), ContactChannel>,
    /// (record type, record id) → the client the record belongs to.
    records: HashMap<(String, Uuid), Option<Uuid>>,
    latest: HashMap<String, TemplateRow>,
    versions: HashMap<(String, i32), TemplateRow>,
    /// Idempotency keys already recorded (a redelivery, a retry, a release, a duplicate).
    recorded: HashSet<String>,
}

impl Known {
    /// Whether a message under this request's key exists already.
    pub fn is_recorded(&self, request: &ValidSendRequest) -> bool {
        self.recorded.contains(&request.idempotency_key)
    }

    /// The recipient's contact and address on the request's channel, if both exist.
    pub fn contact(&self, request: &ValidSendRequest) -> Option<&ContactChannel> {
        let channel = request.channel.as_str().to_string();
        match request.recipient.contact_id() {
            Some(contact_id) => self.by_contact.get(&(contact_id, channel)),
            None => self
                .by_address
                .get(&(channel, address_of(request).to_string())),
        }
    }

    /// The attached record's client: `None` if the record does not exist, `Some(None)` if it
    /// exists and belongs to no client.
    pub fn record_client(&self, request: &ValidSendRequest) -> Option<Option<Uuid>> {
        let key = (
            request.record.record_type.as_str().to_string(),
            request.record.id,
        );
        self.records.get(&key).copied()
    }

    /// The template version [`crate::render::render`] would load for this request.
    pub fn template(&self, request: &ValidSendRequest) -> Option<&TemplateRow> {
        let name = &request.template.name;
        match request.template.version {
            Some(version) => {
                let version = i32::try_from(version).unwrap_or(i32::MAX);
                self.versions.get(&(name.clone(), version))
            }
            None => self.latest.get(name),
        }
    }
}

/// A bare phone or email recipient's address (empty for a contact recipient).
pub fn address_of(request: &ValidSendRequest) -> &str {
    let recipient = &request.recipient;
    recipient.phone().or(recipient.email()).unwrap_or_default()
}

/// Reads everything the group needs, the three lookups side by side.
pub async fn load(pool: &PgPool, requests: &[&ValidSendRequest]) -> Result<Known, sqlx::Error> {
    let (recorded, contacts, records, templates) = tokio::try_join!(
        recorded(pool, requests),
        contacts(pool, requests),
        records(pool, requests),
        templates(pool, requests)
    )?;
    let mut known = Known {
        records,
        recorded,
        ..Known::default()
    };
    for row in contacts {
        known
            .by_address
            .insert((row.channel.clone(), row.address.clone()), row.clone());
        known
            .by_contact
            .insert((row.contact_id, row.channel.clone()), row);
    }
    for (latest, row) in templates {
        if latest {
            known.latest.insert(row.name.clone(), row);
        } else {
            known.versions.insert((row.name.clone(), row.version), row);
        }
    }
    Ok(known)
}

async fn recorded(
    pool: &PgPool,
    requests: &[&ValidSendRequest],
) -> Result<HashSet<String>, sqlx::Error> {
    let keys: Vec<&str> = requests
        .iter()
        .map(|r| r.idempotency_key.as_str())
        .collect();
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT idempotency_key FROM comms.messages WHERE idempotency_key = ANY($1)",
    )
    .bind(&keys)
    .fetch_all(pool)
    .await?;
    Ok(found.into_iter().collect())
}

async fn contacts(
    pool: &PgPool,
    requests: &[&ValidSendRequest],
) -> Result<Vec<ContactChannel>, sqlx::Error> {
    let (mut ids, mut id_channels, mut channels, mut addresses) = (vec![], vec![], vec![], vec![]);
    for request in requests {
        let channel = request.channel.as_str().to_string();
        match request.recipient.contact_id() {
            Some(contact_id) => {
                ids.push(contact_id);
                id_channels.push(channel);
            }
            None => {
                channels.push(channel);
                addresses.push(address_of(request).to_string());
            }
        }
    }
    sqlx::query_as(
        "SELECT cc.contact_id, cc.channel, cc.address, cc.consent_state
         FROM unnest($1::uuid[], $2::text[]) AS u(contact_id, channel)
         JOIN comms.contact_channels cc ON cc.contact_id = u.contact_id AND cc.channel = u.channel
         UNION
         SELECT cc.contact_id, cc.channel, cc.address, cc.consent_state
         FROM unnest($3::text[], $4::text[]) AS u(channel, address)
         JOIN comms.contact_channels cc ON cc.channel = u.channel AND cc.address = u.address",
    )
    .bind(&ids)
    .bind(&id_channels)
    .bind(&channels)
    .bind(&addresses)
    .fetch_all(pool)
    .await
}

async fn records(
    pool: &PgPool,
    requests: &[&ValidSendRequest],
) -> Result<HashMap<(String, Uuid), Option<Uuid>>, sqlx::Error> {
    let ids_of = |wanted: RecordType| -> Vec<Uuid> {
        requests
            .iter()
            .filter(|r| r.record.record_type == wanted)
            .map(|r| r.record.id)
            .collect()
    };
    let rows: Vec<(String, Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT 'client', id, id FROM comms.clients WHERE id = ANY($1)
         UNION ALL SELECT 'lead', id, client_id FROM comms.leads WHERE id = ANY($2)
         UNION ALL SELECT 'project', id, client_id FROM comms.projects WHERE id = ANY($3)
         UNION ALL SELECT 'report', id, client_id FROM comms.reports WHERE id = ANY($4)
         UNION ALL SELECT 'incident', id, client_id FROM comms.incidents WHERE id = ANY($5)
         UNION ALL SELECT 'approval', id, client_id FROM comms.approvals WHERE id = ANY($6)",
    )
    .bind(ids_of(RecordType::Client))
    .bind(ids_of(RecordType::Lead))
    .bind(ids_of(RecordType::Project))
    .bind(ids_of(RecordType::Report))
    .bind(ids_of(RecordType::Incident))
    .bind(ids_of(RecordType::Approval))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(kind, id, client)| ((kind, id), client))
        .collect())
}

#[derive(sqlx::FromRow)]
struct FoundTemplate {
    /// Found as the latest version of its name (not by an exact version).
    latest: bool,
    #[sqlx(flatten)]
    row: TemplateRow,
}

/// Each requested template: the latest (approved first) version for requests without a
/// version, the exact version for the others — the same choice as [`crate::render::render`].
async fn templates(
    pool: &PgPool,
    requests: &[&ValidSendRequest],
) -> Result<Vec<(bool, TemplateRow)>, sqlx::Error> {
    let (mut latest, mut names, mut versions) = (vec![], vec![], vec![]);
    for request in requests {
        let name = request.template.name.clone();
        match request.template.version {
            Some(version) => {
                names.push(name);
                versions.push(i32::try_from(version).unwrap_or(i32::MAX));
            }
            None => latest.push(name),
        }
    }
    latest.sort();
    latest.dedup();
    let rows: Vec<FoundTemplate> = sqlx::query_as(
        "(SELECT DISTINCT ON (name) true AS latest, name, version, channel, subject, body, state
          FROM comms.templates WHERE name = ANY($1)
          ORDER BY name, (state = 'approved') DESC, version DESC)
         UNION ALL
         (SELECT DISTINCT false, t.name, t.version, t.channel, t.subject, t.body, t.state
          FROM unnest($2::text[], $3::int[]) AS u(name, version)
          JOIN comms.templates t ON t.name = u.name AND t.version = u.version)",
    )
    .bind(&latest)
    .bind(&names)
    .bind(&versions)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|found| (found.latest, found.row))
        .collect())
}
