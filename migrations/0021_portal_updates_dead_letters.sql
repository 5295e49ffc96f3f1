-- Every affected client's approved incident update in `portal.updates` (docs/incidents.md).
--
-- `portal.updates` showed a portal update only when its message had an approval of its own
-- content (`comms.cleared_content`). The owner approves an incident notice once, on its proof
-- (one client's portal update); the sender clears the notice's other messages by the notice's
-- state (`comms_shared::incidents::notice_clearance`). So only the proof client's update was
-- listed here, while `portal.incident_notices` (0011) listed every client's. The view now also
-- lists a published incident portal update whose incident notice — found by its idempotency key
-- `incident:<id>:<sequence>:<contact>:portal` — was cleared (approved by the owner or sent with a
-- pre-approved update template), by the same rule as 0011. A waiting or rejected notice still
-- shows nothing; the wording shown is still exactly the message's, which the sender rendered from
-- approved templates and checked as portal-safe; `summary_internal` is never part of it. Columns
-- are unchanged, so the portal role's grant stays.
CREATE OR REPLACE VIEW portal.updates WITH (security_barrier) AS
SELECT u.id,
       u.client_id,
       u.kind,
       u.subject,
       u.body,
       u.published_at
FROM comms.portal_updates u
JOIN comms.messages m ON m.id = u.message_id
LEFT JOIN comms.cleared_content c ON c.message_id = m.id
LEFT JOIN comms.incident_notices n
       ON m.kind = 'incident_notice'
      AND m.record_type = 'incident'
      AND NOT m.ai_draft
      AND split_part(m.idempotency_key, ':', 1) = 'incident'
      AND split_part(m.idempotency_key, ':', 2) = m.record_id::text
      AND n.incident_id = m.record_id
      AND n.sequence::text = split_part(m.idempotency_key, ':', 3)
      AND n.state IN ('approved', 'done')
WHERE u.subject IS NOT DISTINCT FROM m.subject
  AND u.body = m.body
  AND (c.message_id IS NOT NULL OR n.id IS NOT NULL);

-- Dead letters an operator can act on (docs/operations.md#dead-letters, `commsctl dead`).
--
-- `internal.rejected_input` is the one listing of dead letters: the consumer runtime writes a row
-- for each message it dead-letters; the broker's own dead letters (a queue's delivery limit) are
-- collected from `comms.dead` into it (`origin = 'broker'`, deduplicated by `dead_key`). A row is
-- `dead` until an operator replays it (published again to its origin queue) or purges it (payload
-- and headers deleted; the row stays as the record). Each replay and purge is one audit row in
-- `internal.dead_letter_actions`: who, when, why, which filters, how many matched and were done.
CREATE TABLE internal.dead_letter_actions (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action           text NOT NULL CHECK (action IN ('replay', 'purge')),
    actor            text NOT NULL CHECK (actor <> ''),
    reason           text NOT NULL CHECK (reason <> ''),
    filters          jsonb NOT NULL,
    matched          integer NOT NULL,
    done             integer NOT NULL DEFAULT 0,
    rate_per_second  double precision,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);

ALTER TABLE internal.rejected_input
    ADD COLUMN state     text NOT NULL DEFAULT 'dead' CHECK (state IN ('dead', 'replayed', 'purged')),
    ADD COLUMN origin    text NOT NULL DEFAULT 'runtime' CHECK (origin IN ('runtime', 'broker')),
    ADD COLUMN dead_key  text UNIQUE,
    ADD COLUMN action_id bigint REFERENCES internal.dead_letter_actions (id),
    ADD COLUMN acted_at  timestamptz;

CREATE INDEX rejected_input_dead_idx ON internal.rejected_input (id) WHERE state = 'dead';

REVOKE ALL ON internal.dead_letter_actions FROM PUBLIC;
