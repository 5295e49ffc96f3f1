-- The incident fan-out worker (comms-incidents, docs/incidents.md).
--
-- `comms.incidents` stays the record notices attach to; this adds what the worker needs to take
-- incident events exactly once and in order, to pause the clients an unverified incident
-- affects, and to fan a notice out in chunks that survive a crash.

-- The latest accepted sequence, facts state and the decision that lifted the incident's pauses.
ALTER TABLE comms.incidents
    ADD COLUMN sequence            bigint NOT NULL DEFAULT 0,
    ADD COLUMN facts_verified      boolean NOT NULL DEFAULT false,
    ADD COLUMN source              text,
    ADD COLUMN template            jsonb,
    ADD COLUMN automation_paused   boolean NOT NULL DEFAULT false,
    ADD COLUMN first_notice_at     timestamptz,
    ADD COLUMN declared_at         timestamptz NOT NULL DEFAULT now();

-- One incident may affect many clients (and through projects): the link, with how it came in.
CREATE TABLE comms.incident_clients (
    incident_id  uuid NOT NULL REFERENCES comms.incidents (id),
    client_id    uuid NOT NULL REFERENCES comms.clients (id),
    -- The project named in the event, when the client was affected through one.
    project_id   uuid REFERENCES comms.projects (id),
    added_at_sequence bigint NOT NULL,
    PRIMARY KEY (incident_id, client_id)
);

CREATE INDEX incident_clients_client_idx ON comms.incident_clients (client_id);

-- Every accepted event, by sequence: a replay or an older sequence finds its row (or a newer
-- one) and changes nothing. `summary_internal` is not here: it goes to internal.incident_notes.
CREATE TABLE comms.incident_events (
    incident_id     uuid NOT NULL REFERENCES comms.incidents (id),
    sequence        bigint NOT NULL CHECK (sequence > 0),
    event_type      text NOT NULL CHECK (event_type IN ('declared', 'updated', 'facts_verified', 'resolved')),
    title           text NOT NULL,
    severity        text NOT NULL,
    facts_verified  boolean NOT NULL,
    owner           text NOT NULL,
    source          text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    affected        jsonb NOT NULL,
    template        jsonb,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, sequence)
);

-- The incident's timeline beyond its events: pauses, approvals, notices, decisions. Append-only.
CREATE TABLE comms.incident_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  uuid NOT NULL REFERENCES comms.incidents (id),
    what         text NOT NULL,
    actor        text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX incident_log_incident_idx ON comms.incident_log (incident_id, id);
CREATE TRIGGER incident_log_append_only BEFORE UPDATE OR DELETE ON comms.incident_log
    FOR EACH ROW EXECUTE FUNCTION comms.refuse_event_change();

-- One notice per incident and sequence: its approval, and the fan-out's resumable progress.
CREATE TABLE comms.incident_notices (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    incident_id     uuid NOT NULL REFERENCES comms.incidents (id),
    sequence        bigint NOT NULL,
    purpose         text NOT NULL CHECK (purpose IN ('update', 'resolution')),
    template_base   text NOT NULL,
    template_version integer,
    vars            jsonb NOT NULL,
    -- awaiting_approval: the proof message waits for the owner; approved: fan-out may run;
    -- done: every target was published or skipped; rejected: the owner said no, nothing goes out.
    state           text NOT NULL CHECK (state IN ('awaiting_approval', 'approved', 'done', 'rejected')),
    -- How it was cleared: the owner's approval of the proof, or a pre-approved update template.
    basis           text CHECK (basis IN ('owner_approval', 'preapproved_template')),
    proof_key       text,
    decided_by      text,
    -- The fan-out's progress: targets are ordered by (client, contact); the last one done.
    cursor_client   uuid,
    cursor_contact  uuid,
    published_sms    integer NOT NULL DEFAULT 0,
    published_email  integer NOT NULL DEFAULT 0,
    published_portal integer NOT NULL DEFAULT 0,
    skipped         integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    approved_at     timestamptz,
    finished_at     timestamptz,
    UNIQUE (incident_id, sequence)
);

CREATE INDEX incident_notices_open_idx ON comms.incident_notices (created_at)
    WHERE state IN ('awaiting_approval', 'approved');

-- The fan-out walks each affected client's contacts in id order.
CREATE INDEX IF NOT EXISTS contacts_client_idx ON comms.contacts (client_id, id);

-- Contacts a notice did not go to, and why (never silently).
CREATE TABLE comms.incident_skips (
    notice_id   uuid NOT NULL REFERENCES comms.incident_notices (id),
    contact_id  uuid,
    client_id   uuid NOT NULL,
    channel     text NOT NULL,
    reason      text NOT NULL,
    -- contact_id is empty when a client has no contact at all (reason no_contact).
    UNIQUE NULLS NOT DISTINCT (notice_id, client_id, contact_id, channel)
);

-- A client pause the incident worker turned on remembers the incident that caused it: that
-- incident's own notices pass it (docs/incidents.md, "the pause rule"); nothing else does.
ALTER TABLE comms.pauses ADD COLUMN incident_id uuid;

-- Internal incident notes: summary_internal as received, and what each notice did. Never granted
-- to the portal role (the internal schema is not).
CREATE TABLE internal.incident_notes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  uuid NOT NULL,
    sequence     bigint,
    kind         text NOT NULL CHECK (kind IN ('summary_internal', 'notice')),
    body         text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX incident_notes_incident_idx ON internal.incident_notes (incident_id, id);

REVOKE ALL ON comms.incident_clients, comms.incident_events, comms.incident_log,
    comms.incident_notices, comms.incident_skips, internal.incident_notes FROM PUBLIC;
