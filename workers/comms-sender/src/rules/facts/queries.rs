//! The statements of the loader: one per kind of fact for a whole group, each issued only when
//! a member needs it (see [`super`]).

use std::collections::{HashMap, HashSet};

use comms_domain::contract::{Kind, RecordType, ValidSendRequest};
use comms_domain::incidents::{notice_decision, parse_notice_key};
use comms_domain::{digests, outcomes::review_link};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    Contact, DigestClearance, Facts, Member, Records, Templates, address_of, contact_ref,
    version_of,
};
use crate::render::TemplateRow;

pub(super) async fn recorded(
    pool: &PgPool,
    members: &[Member<'_>],
) -> Result<HashSet<String>, sqlx::Error> {
    let keys: Vec<&str> = members
        .iter()
        .filter(|m| m.message.is_none())
        .map(|m| m.request.idempotency_key.as_str())
        .collect();
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT idempotency_key FROM comms.messages WHERE idempotency_key = ANY($1)",
    )
    .bind(&keys)
    .fetch_all(pool)
    .await?;
    Ok(found.into_iter().collect())
}

pub(super) async fn contacts(
    pool: &PgPool,
    members: &[Member<'_>],
) -> Result<Vec<Contact>, sqlx::Error> {
    let (mut ids, mut id_channels, mut channels, mut addresses) = (vec![], vec![], vec![], vec![]);
    for member in members {
        let channel = member.request.channel.as_str().to_string();
        match contact_ref(member) {
            Some(contact_id) => {
                ids.push(contact_id);
                id_channels.push(channel);
            }
            None => {
                channels.push(channel);
                addresses.push(address_of(member.request).to_string());
            }
        }
    }
    sqlx::query_as(
        "SELECT c.id AS contact_id, u.channel, cc.address, cc.consent_state, c.time_zone
         FROM unnest($1::uuid[], $2::text[]) AS u(contact_id, channel)
         JOIN comms.contacts c ON c.id = u.contact_id
         LEFT JOIN comms.contact_channels cc ON cc.contact_id = u.contact_id AND cc.channel = u.channel
         UNION
         SELECT cc.contact_id, cc.channel, cc.address, cc.consent_state, c.time_zone
         FROM unnest($3::text[], $4::text[]) AS u(channel, address)
         JOIN comms.contact_channels cc ON cc.channel = u.channel AND cc.address = u.address
         JOIN comms.contacts c ON c.id = cc.contact_id",
    )
    .bind(&ids)
    .bind(&id_channels)
    .bind(&channels)
    .bind(&addresses)
    .fetch_all(pool)
    .await
}

pub(super) async fn records(pool: &PgPool, members: &[Member<'_>]) -> Result<Records, sqlx::Error> {
    let ids_of = |wanted: RecordType| -> Vec<Uuid> {
        members
            .iter()
            .filter(|m| m.request.record.record_type == wanted)
            .map(|m| m.request.record.id)
            .collect()
    };
    // A message attached to an incident belongs to its recipient contact's client.
    let incident_contacts: Vec<Uuid> = members
        .iter()
        .filter(|m| m.request.record.record_type == RecordType::Incident)
        .filter_map(contact_ref)
        .collect();
    let rows: Vec<(String, Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT 'client', id, id FROM comms.clients WHERE id = ANY($1)
         UNION ALL SELECT 'lead', id, client_id FROM comms.leads WHERE id = ANY($2)
         UNION ALL SELECT 'project', id, client_id FROM comms.projects WHERE id = ANY($3)
         UNION ALL SELECT 'report', id, client_id FROM comms.reports WHERE id = ANY($4)
         UNION ALL SELECT 'incident', id, client_id FROM comms.incidents WHERE id = ANY($5)
         UNION ALL SELECT 'approval', id, client_id FROM comms.approvals WHERE id = ANY($6)
         UNION ALL SELECT 'contact', id, client_id FROM comms.contacts WHERE id = ANY($7)",
    )
    .bind(ids_of(RecordType::Client))
    .bind(ids_of(RecordType::Lead))
    .bind(ids_of(RecordType::Project))
    .bind(ids_of(RecordType::Report))
    .bind(ids_of(RecordType::Incident))
    .bind(ids_of(RecordType::Approval))
    .bind(incident_contacts)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(kind, id, client)| ((kind, id), client))
        .collect())
}

/// The decision of each incident notice the group's notice requests belong to.
pub(super) async fn notices(
    pool: &PgPool,
    requests: &[&ValidSendRequest],
) -> Result<HashMap<(Uuid, i64), &'static str>, sqlx::Error> {
    let (mut incidents, mut sequences) = (Vec::new(), Vec::new());
    for request in requests.iter().filter(|r| r.kind == Kind::IncidentNotice) {
        if let Some((incident, sequence)) = parse_notice_key(&request.idempotency_key) {
            incidents.push(incident);
            sequences.push(sequence);
        }
    }
    if incidents.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, i64, String)> = sqlx::query_as(
        "SELECT DISTINCT n.incident_id, n.sequence, n.state
         FROM unnest($1::uuid[], $2::int8[]) AS u(incident_id, sequence)
         JOIN comms.incident_notices n ON n.incident_id = u.incident_id AND n.sequence = u.sequence",
    )
    .bind(&incidents)
    .bind(&sequences)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(incident, sequence, state)| {
            notice_decision(&state).map(|d| ((incident, sequence), d))
        })
        .collect())
}

/// The latest owner decision and the latest AI-draft review on each content of the recorded
/// messages that need one.
pub(super) async fn approvals(
    pool: &PgPool,
    members: &[Member<'_>],
) -> Result<HashMap<Uuid, Vec<(String, String)>>, sqlx::Error> {
    let ids: Vec<Uuid> = members
        .iter()
        .filter(|m| m.request.ai_draft || crate::rules::needs_approval(m.request))
        .filter_map(|m| m.message.map(|message| message.id))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT DISTINCT ON (message_id, content_hash, decision = 'reviewed_safe')
             message_id, content_hash, decision
         FROM comms.message_approvals
         WHERE message_id = ANY($1)
           AND decision IN ('approved', 'rejected', 'expired', 'reviewed_safe')
         ORDER BY message_id, content_hash, decision = 'reviewed_safe', decided_at DESC",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut by_message: HashMap<Uuid, Vec<(String, String)>> = HashMap::new();
    for (id, hash, decision) in rows {
        by_message.entry(id).or_default().push((hash, decision));
    }
    Ok(by_message)
}

/// Each requested template: the latest (approved first) version for requests without a
/// version, the exact version for the others.
pub(super) async fn templates(
    pool: &PgPool,
    requests: &[&ValidSendRequest],
) -> Result<Templates, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Found {
        latest: bool,
        #[sqlx(flatten)]
        row: TemplateRow,
    }
    let (mut latest, mut names, mut versions) = (vec![], vec![], vec![]);
    for request in requests {
        let name = request.template.name.clone();
        match request.template.version {
            Some(version) => {
                names.push(name);
                versions.push(version_of(version));
            }
            None => latest.push(name),
        }
    }
    latest.sort();
    latest.dedup();
    let rows: Vec<Found> = sqlx::query_as(
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
    let mut found: Templates = Default::default();
    for Found { latest, row } in rows {
        if latest {
            found.0.insert(row.name.clone(), row);
        } else {
            found.1.insert((row.name.clone(), row.version), row);
        }
    }
    Ok(found)
}

/// Whether a recorded review request's client has a review destination.
pub(super) async fn destination(
    pool: &PgPool,
    member: &Member<'_>,
    facts: &Facts,
) -> Result<bool, sqlx::Error> {
    let client = facts.record_client.flatten();
    match client {
        Some(client) if member.request.kind == Kind::ReviewRequest && member.message.is_some() => {
            Ok(review_link::destination(pool, client).await?.is_some())
        }
        _ => Ok(false),
    }
}

/// Whether a recorded digest send's digest approval covers the wording it renders to.
pub(super) async fn digest(
    pool: &PgPool,
    member: &Member<'_>,
    facts: &Facts,
) -> Result<Option<DigestClearance>, sqlx::Error> {
    let request = member.request;
    if request.kind != Kind::ReportDigest
        || member.message.is_none()
        || !digests::is_send_key(&request.idempotency_key)
    {
        return Ok(None);
    }
    let Ok(rendered) = crate::render::render_row(facts.template.as_ref(), request) else {
        return Ok(None);
    };
    let subject = rendered.subject;
    let body = rendered.body;
    let cleared =
        digests::send_clearance(pool, &request.idempotency_key, subject.as_deref(), &body)
            .await?
            .is_some();
    Ok(Some(DigestClearance {
        subject,
        body,
        cleared,
    }))
}
