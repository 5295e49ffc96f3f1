-- The approval workflow and the portal boundary.
--
-- Approvals: who may decide for whom (delegates), what a decision covered (the content hash, as
-- before), on whose behalf and how long it took, and whether the approved request was handed back
-- to the sender yet (so a lost publish is repaired by housekeeping instead of stranding the message).
--
-- The portal boundary: the client portal reads only the views of the `portal` schema, through the
-- read-only role `comms_portal`, which cannot see the `comms` or `internal` schemas at all. The
-- views run with their owner's rights, so they can read the internal tables the role cannot, and
-- they expose only approved, client-safe columns.

-- Delegates ---------------------------------------------------------------------------------------

-- `delegate` may approve, reject and review messages owned by `owner`.
CREATE TABLE comms.approval_delegates (
    owner       text NOT NULL CHECK (btrim(owner) <> ''),
    delegate    text NOT NULL CHECK (btrim(delegate) <> ''),
    granted_by  text NOT NULL CHECK (btrim(granted_by) <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, delegate),
    CHECK (owner <> delegate)
);

-- Decisions -----------------------------------------------------------------------------------------

ALTER TABLE comms.message_approvals
    -- The owner a delegate decided for (NULL when the owner decided, or the fleet expired it).
    ADD COLUMN on_behalf_of text,
    -- When the approved request was published to comms.send again (NULL: not yet, or not needed).
    ADD COLUMN republished_at timestamptz,
    -- Request to decision, in seconds: the approval time the owner is measured on.
    ADD COLUMN approval_seconds double precision
        GENERATED ALWAYS AS (extract(epoch FROM (decided_at - requested_at))::double precision) STORED;

CREATE INDEX message_approvals_republish_idx ON comms.message_approvals (decided_at)
    WHERE republished_at IS NULL AND decision IN ('approved', 'reviewed_safe');

-- The fingerprint decisions are recorded on, the same bytes as `comms_shared::approvals::approval_hash`:
-- sha256(subject || 0x00 || body), hex. The portal views use it to show only approved content.
CREATE FUNCTION comms.approval_hash(subject text, body text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN encode(sha256(convert_to(coalesce(subject, ''), 'UTF8') || '\x00'::bytea
                         || convert_to(body, 'UTF8')), 'hex');

-- Messages whose current content the owner approved (the latest approve/reject/expire decision on
-- exactly this content is `approved`, as the sender checks it) and, if an AI drafted it, a review
-- marked safe. The portal views show content only through this.
CREATE VIEW comms.cleared_content AS
SELECT m.id AS message_id,
       d.decided_at AS approved_at
FROM comms.messages m
CROSS JOIN LATERAL (SELECT comms.approval_hash(m.subject, m.body) AS hash) h
JOIN LATERAL (
    SELECT a.decision, a.decided_at
    FROM comms.message_approvals a
    WHERE a.message_id = m.id
      AND a.content_hash = h.hash
      AND a.decision IN ('approved', 'rejected', 'expired')
    ORDER BY a.decided_at DESC
    LIMIT 1
) d ON d.decision = 'approved'
WHERE NOT m.ai_draft
   OR EXISTS (SELECT 1 FROM comms.message_approvals r
              WHERE r.message_id = m.id AND r.decision = 'reviewed_safe' AND r.content_hash = h.hash);

-- The portal schema: client-safe views only ----------------------------------------------------------

CREATE SCHEMA IF NOT EXISTS portal;

-- What the portal shows as updates: published, owner-approved, never an unreviewed AI draft.
CREATE VIEW portal.updates WITH (security_barrier) AS
SELECT u.id,
       u.client_id,
       u.kind,
       u.subject,
       u.body,
       u.published_at
FROM comms.portal_updates u
JOIN comms.messages m ON m.id = u.message_id
JOIN comms.cleared_content c ON c.message_id = m.id
WHERE u.subject IS NOT DISTINCT FROM m.subject
  AND u.body = m.body;

-- Where a client's messages stand, in words a client can read: no addresses, no provider ids, no
-- failure reasons. Only messages that actually left are listed, so a pending incident notice does
-- not reveal its incident before its wording is approved.
CREATE VIEW portal.delivery_status WITH (security_barrier) AS
SELECT m.id AS message_id,
       m.client_id,
       m.channel,
       m.kind,
       CASE m.delivery_state
           WHEN 'delivered' THEN 'delivered'
           WHEN 'sent' THEN 'sent'
           ELSE 'not delivered'
       END AS status,
       m.dispatched_at AS sent_at,
       m.delivered_at
FROM comms.messages m
WHERE m.client_id IS NOT NULL
  AND m.dispatched_at IS NOT NULL;

-- Report digests that went out with an owner approval of exactly their wording.
CREATE VIEW portal.report_digests WITH (security_barrier) AS
SELECT m.id AS message_id,
       r.id AS report_id,
       r.client_id,
       r.title AS report_title,
       m.subject,
       m.body,
       c.approved_at,
       m.dispatched_at AS sent_at
FROM comms.messages m
JOIN comms.reports r ON m.record_type = 'report' AND r.id = m.record_id
JOIN comms.cleared_content c ON c.message_id = m.id
WHERE m.kind = 'report_digest'
  AND m.dispatched_at IS NOT NULL;

-- Incident notices as approved: the approved summary and the incident's public facts (severity,
-- state, times), never its title or evidence.
CREATE VIEW portal.incident_notices WITH (security_barrier) AS
SELECT m.id AS message_id,
       i.id AS incident_id,
       m.client_id,
       i.severity,
       i.state AS incident_state,
       i.started_at,
       i.resolved_at,
       m.subject,
       m.body,
       c.approved_at,
       m.dispatched_at AS sent_at
FROM comms.messages m
JOIN comms.incidents i ON m.record_type = 'incident' AND i.id = m.record_id
JOIN comms.cleared_content c ON c.message_id = m.id
WHERE m.kind = 'incident_notice'
  AND m.dispatched_at IS NOT NULL;

-- The read-only portal role ----------------------------------------------------------------------------

-- Roles are cluster-wide while migrations run per database, possibly several at once (tests create
-- many databases in parallel): create it only if missing, and treat losing that race as success.
-- No LOGIN and no password: a deployment grants it to a login role of its own choosing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'comms_portal') THEN
        BEGIN
            CREATE ROLE comms_portal NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

-- Nothing internal for anyone but the owner of the schemas (the fleet's own role) ...
REVOKE ALL ON SCHEMA comms, internal FROM PUBLIC, comms_portal;
REVOKE ALL ON ALL TABLES IN SCHEMA comms, internal FROM PUBLIC, comms_portal;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA comms, internal FROM PUBLIC, comms_portal;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM comms_portal;
-- ... and the portal role reads the portal views, nothing else. A new portal view needs its own
-- GRANT (deliberately: nothing becomes portal-visible by default).
REVOKE ALL ON SCHEMA portal FROM PUBLIC;
GRANT USAGE ON SCHEMA portal TO comms_portal;
GRANT SELECT ON portal.updates, portal.delivery_status, portal.report_digests, portal.incident_notices
    TO comms_portal;
