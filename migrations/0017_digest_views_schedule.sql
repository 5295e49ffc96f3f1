-- Report views and the digest schedule's record (docs/digests.md).
--
-- Every digest send carries a link of its own: `view_url`, signed with `digest.view_secret` over
-- the digest, the contact and an expiry (`comms_shared::digests::link`). The digest itself is
-- rendered once, with a placeholder where each recipient's link goes, so one approval still
-- covers every send: a send's wording is the digest's wording once its own link is put back to
-- the placeholder (`comms.digest_wording`).

ALTER TABLE comms.digest_sends ADD COLUMN view_url text;

-- The placeholder the digest's own rendering carries where each recipient's link goes; the same
-- text as `comms_shared::digests::link::PLACEHOLDER`.
CREATE FUNCTION comms.digest_wording(wording text, view_url text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN view_url IS NULL OR view_url = '' OR wording IS NULL THEN wording
                ELSE replace(wording, view_url, '[personal report link]') END
$$;

-- The portal shows a digest send once dispatched when its wording, with the recipient's link put
-- back to the placeholder, is exactly the approved digest's (as 0012, which compared the bytes).
CREATE OR REPLACE VIEW portal.report_digests WITH (security_barrier) AS
SELECT m.id AS message_id,
       r.id AS report_id,
       r.client_id,
       r.title AS report_title,
       m.subject,
       m.body,
       coalesce(c.approved_at, dg.approved_at) AS approved_at,
       m.dispatched_at AS sent_at
FROM comms.messages m
JOIN comms.reports r ON m.record_type = 'report' AND r.id = m.record_id
LEFT JOIN comms.cleared_content c ON c.message_id = m.id
LEFT JOIN LATERAL (
    SELECT d.approved_at
    FROM comms.digest_sends s
    JOIN comms.digests d ON d.id = s.digest_id
    WHERE s.idempotency_key = m.idempotency_key
      AND d.state IN ('approved', 'published')
      AND NOT m.ai_draft
      AND CASE s.channel
              WHEN 'email' THEN comms.approval_hash(d.email_subject, d.email_body)
              ELSE comms.approval_hash(d.portal_subject, d.portal_body)
          END = comms.approval_hash(comms.digest_wording(m.subject, s.view_url),
                                    comms.digest_wording(m.body, s.view_url))
) dg ON true
WHERE m.kind = 'report_digest'
  AND m.dispatched_at IS NOT NULL
  AND (c.message_id IS NOT NULL OR dg.approved_at IS NOT NULL);

-- Views: every opening of a valid link is a row (0009); the first one per contact and digest is
-- marked `first` (at most one, by the index), and that one is the "report viewed" outcome.
ALTER TABLE comms.digest_views ADD COLUMN first boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX digest_views_first_idx ON comms.digest_views (digest_id, contact_id) WHERE first;

-- Upstream apps hear about it: a contact's first view of a digest is a `digest.viewed` lifecycle
-- event (docs/upstream.md), in the same transaction; later views of that contact are not.
CREATE FUNCTION comms.outbox_digest_views() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_event uuid := gen_random_uuid();
BEGIN
    INSERT INTO comms.event_outbox (event_id, routing_key, payload)
    SELECT new_event, 'digest.viewed',
        jsonb_build_object(
            'schema', 'comms.event.v1',
            'event_id', new_event,
            'type', 'digest.viewed',
            'occurred_at', NEW.viewed_at,
            'app', NULL,
            'message', NULL,
            'task', NULL,
            'incident', NULL,
            'digest', jsonb_build_object(
                'id', d.id,
                'period_id', d.period_id,
                'revision', d.revision,
                'client_id', d.client_id,
                'state', d.state,
                'owner', d.owner,
                'source', d.source),
            'reason', NULL)
    FROM comms.digests d WHERE d.id = NEW.digest_id;
    RETURN NULL;
END $$;

CREATE TRIGGER digest_views_outbox AFTER INSERT ON comms.digest_views
    FOR EACH ROW WHEN (NEW.first) EXECUTE FUNCTION comms.outbox_digest_views();

-- The built-in schedule (`digest.schedule`): one row per cron occurrence that was handled, by the
-- replica that handled it (the key keeps a second replica from enqueueing the same occurrence),
-- with how many `digest.report` jobs it enqueued.
CREATE TABLE comms.digest_schedule_runs (
    occurrence  timestamptz PRIMARY KEY,
    enqueued    integer NOT NULL CHECK (enqueued >= 0),
    ran_at      timestamptz NOT NULL DEFAULT now()
);
