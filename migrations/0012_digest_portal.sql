-- Report digests approved as a whole (comms-digest) are shown in the portal.
--
-- The owner approves a digest once; the sender takes that approval for each send the digest
-- handed over whose wording is exactly the digest's wording for its channel
-- (`comms_shared::digests::send_clearance`). Such a message has no approval of its own, so the
-- view also accepts the digest's approval, on the same condition, with the digest's approval time.

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
          END = comms.approval_hash(m.subject, m.body)
) dg ON true
WHERE m.kind = 'report_digest'
  AND m.dispatched_at IS NOT NULL
  AND (c.message_id IS NOT NULL OR dg.approved_at IS NOT NULL);
