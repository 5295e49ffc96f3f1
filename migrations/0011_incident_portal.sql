-- Every affected client's approved incident notice in the portal (docs/incidents.md).
--
-- The owner approves an incident notice once, on its proof (one client's portal update); the
-- sender then clears the notice's other messages by the notice's state, not by an approval of
-- their own content. `portal.incident_notices` listed only messages with an approval of their own
-- content hash, so only the proof client saw the update. It now also lists a dispatched portal
-- notice whose incident notice (found by its idempotency key `incident:<id>:<sequence>:…`) was
-- cleared: approved by the owner or sent with a pre-approved update template. A rejected or
-- waiting notice still shows nothing. Columns are unchanged, so the portal role's grant stays.
--
-- `client_id` is the recipient contact's client: the sender attributes every message of an
-- incident to the incident's first client (`comms.incidents.client_id`), which is right only for
-- that client.
CREATE OR REPLACE VIEW portal.incident_notices WITH (security_barrier) AS
SELECT m.id AS message_id,
       i.id AS incident_id,
       COALESCE(ct.client_id, m.client_id) AS client_id,
       i.severity,
       i.state AS incident_state,
       i.started_at,
       i.resolved_at,
       m.subject,
       m.body,
       COALESCE(c.approved_at, n.approved_at) AS approved_at,
       m.dispatched_at AS sent_at
FROM comms.messages m
JOIN comms.incidents i ON m.record_type = 'incident' AND i.id = m.record_id
LEFT JOIN comms.contacts ct ON ct.id = m.contact_id
LEFT JOIN comms.cleared_content c ON c.message_id = m.id
LEFT JOIN comms.incident_notices n
       ON m.channel = 'portal'
      AND split_part(m.idempotency_key, ':', 1) = 'incident'
      AND split_part(m.idempotency_key, ':', 2) = i.id::text
      AND n.incident_id = i.id
      AND n.sequence::text = split_part(m.idempotency_key, ':', 3)
      AND n.state IN ('approved', 'done')
WHERE m.kind = 'incident_notice'
  AND m.dispatched_at IS NOT NULL
  AND (c.message_id IS NOT NULL OR n.id IS NOT NULL);
