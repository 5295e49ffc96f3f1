//! Who a portal update is for. A portal update is shown to a contact in the client portal, so —
//! unlike SMS and email — it needs no address of its own: a `contact_id` is enough, and a bare
//! phone number or email address is resolved to the contact that already owns it on its own
//! channel. Only an address no contact owns yet becomes a new contact, as on the other channels.

use comms_domain::contract::ValidSendRequest;
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::RecordError;

/// The contact (and the address recorded on the message) of a portal update, or `None` when the
/// request names an address no contact owns yet (the caller then creates the contact).
pub async fn resolve(
    pool: &PgPool,
    request: &ValidSendRequest,
) -> Result<Option<(Uuid, String)>, RecordError> {
    let recipient = &request.recipient;
    if let Some(contact_id) = recipient.contact_id() {
        let found: Option<Option<String>> = sqlx::query_scalar(
            "SELECT (SELECT address FROM comms.contact_channels
                      WHERE contact_id = c.id AND channel = 'portal')
             FROM comms.contacts c WHERE c.id = $1",
        )
        .bind(contact_id)
        .fetch_optional(pool)
        .await?;
        let portal_address = found.ok_or(RecordError::UnknownContact(contact_id))?;
        // The portal finds its updates by contact; the recorded address only names who it is for.
        let address = portal_address.unwrap_or_else(|| format!("contact:{contact_id}"));
        return Ok(Some((contact_id, address)));
    }
    let (own_channel, address) = match (recipient.phone(), recipient.email()) {
        (Some(phone), _) => ("sms", phone),
        (None, Some(email)) => ("email", email),
        (None, None) => return Ok(None),
    };
    let owner: Option<Uuid> = sqlx::query_scalar(
        "SELECT contact_id FROM comms.contact_channels WHERE channel = $1 AND address = $2",
    )
    .bind(own_channel)
    .bind(address)
    .fetch_optional(pool)
    .await?;
    Ok(owner.map(|contact_id| (contact_id, address.to_string())))
}
