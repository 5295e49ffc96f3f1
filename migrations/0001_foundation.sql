-- The foundation data model of comms-fleet.
--
-- Two schemas keep the internal boundary in the database itself:
--   comms    - the operational records the fleet reads and writes (messages, contacts, templates,
--              tasks, platform records). Never granted to a portal role.
--   internal - material that must never reach a client: raw provider payloads, rejected input
--              with its raw bytes, private notes. Never granted to a portal role either.
-- A later `portal` schema exposes only client-safe views, so a read-only portal role can be given
-- USAGE on `portal` and nothing else.

CREATE SCHEMA IF NOT EXISTS comms;
CREATE SCHEMA IF NOT EXISTS internal;

-- Platform records the fleet attaches messages to ---------------------------------------------

CREATE TABLE comms.clients (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    owner       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE comms.leads (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id   uuid REFERENCES comms.clients (id),
    name        text NOT NULL,
    owner       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE comms.projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id   uuid NOT NULL REFERENCES comms.clients (id),
    name        text NOT NULL,
    owner       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE comms.reports (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id   uuid NOT NULL REFERENCES comms.clients (id),
    project_id  uuid REFERENCES comms.projects (id),
    title       text NOT NULL,
    owner       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE comms.report_periods (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    report_id   uuid NOT NULL REFERENCES comms.reports (id),
    starts_on   date NOT NULL,
    ends_on     date NOT NULL,
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'published')),
    CHECK (ends_on >= starts_on)
);

CREATE TABLE comms.report_notes (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    report_id   uuid NOT NULL REFERENCES comms.reports (id),
    body        text NOT NULL,
    -- 'internal' notes never reach a portal view; 'client' notes may, once approved.
    visibility  text NOT NULL DEFAULT 'internal' CHECK (visibility IN ('internal', 'client')),
    author      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE comms.incidents (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id   uuid REFERENCES comms.clients (id),
    title       text NOT NULL,
    severity    text NOT NULL DEFAULT 'minor' CHECK (severity IN ('minor', 'major', 'critical')),
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'monitoring', 'resolved')),
    owner       text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);

-- An approval request on the platform (a deliverable, a budget, a plan) that a message can be about.
CREATE TABLE comms.approvals (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id   uuid REFERENCES comms.clients (id),
    subject     text NOT NULL,
    owner       text NOT NULL,
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'approved', 'rejected', 'expired')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Contacts and consent ------------------------------------------------------------------------

CREATE TABLE comms.contacts (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text,
    time_zone   text,
    client_id   uuid REFERENCES comms.clients (id),
    lead_id     uuid REFERENCES comms.leads (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One address per contact and channel, with that channel's consent state. Suppression (hard
-- bounce, spam report) and opt-out (STOP, unsubscribe) are both "never send on this channel".
CREATE TABLE comms.contact_channels (
    contact_id      uuid NOT NULL REFERENCES comms.contacts (id),
    channel         text NOT NULL CHECK (channel IN ('sms', 'email', 'portal')),
    address         text NOT NULL,
    consent_state   text NOT NULL DEFAULT 'unknown'
                    CHECK (consent_state IN ('unknown', 'express', 'implied', 'opted_out', 'suppressed')),
    consent_basis   text,
    consent_source  text,
    consent_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, channel),
    UNIQUE (channel, address)
);

-- Templates -------------------------------------------------------------------------------------

CREATE TABLE comms.templates (
    name         text NOT NULL CHECK (name ~ '^[a-z0-9_.-]{1,100}$'),
    version      integer NOT NULL CHECK (version > 0),
    channel      text NOT NULL CHECK (channel IN ('sms', 'email', 'portal')),
    subject      text,
    body         text NOT NULL,
    state        text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'approved', 'retired')),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    approved_by  text,
    approved_at  timestamptz,
    PRIMARY KEY (name, version),
    CHECK (state <> 'approved' OR (approved_by IS NOT NULL AND approved_at IS NOT NULL))
);

-- An approved version is what was reviewed: its content can never change afterwards.
CREATE FUNCTION comms.freeze_approved_template() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state IN ('approved', 'retired')
       AND (NEW.body IS DISTINCT FROM OLD.body
            OR NEW.subject IS DISTINCT FROM OLD.subject
            OR NEW.channel IS DISTINCT FROM OLD.channel) THEN
        RAISE EXCEPTION 'template %@% is approved and cannot change', OLD.name, OLD.version
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER templates_freeze_approved BEFORE UPDATE ON comms.templates
    FOR EACH ROW EXECUTE FUNCTION comms.freeze_approved_template();

-- Messages ----------------------------------------------------------------------------------------

CREATE TABLE comms.messages (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    idempotency_key      text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    channel              text NOT NULL CHECK (channel IN ('sms', 'email', 'portal')),
    kind                 text NOT NULL CHECK (kind IN ('transactional', 'outreach', 'review_request',
                                  'approval_request', 'incident_notice', 'report_digest', 'portal_update')),
    contact_id           uuid NOT NULL REFERENCES comms.contacts (id),
    recipient_address    text NOT NULL,
    owner                text NOT NULL CHECK (owner <> ''),
    source               text NOT NULL CHECK (source <> ''),
    trigger              text NOT NULL CHECK (trigger <> ''),
    record_type          text NOT NULL CHECK (record_type IN ('lead', 'client', 'project', 'report', 'incident', 'approval')),
    record_id            uuid NOT NULL,
    -- The client the record belongs to (resolved at preflight), for client-scoped pauses.
    client_id            uuid REFERENCES comms.clients (id),
    template_name        text NOT NULL,
    template_version     integer,
    subject              text,
    body                 text,
    contains_roi         boolean NOT NULL DEFAULT false,
    ai_draft             boolean NOT NULL DEFAULT false,
    delivery_state       text NOT NULL DEFAULT 'received' CHECK (delivery_state IN (
                             'received', 'deferred', 'awaiting_approval', 'held', 'retrying', 'sending',
                             'sent', 'delivered', 'undelivered', 'failed', 'blocked', 'cancelled')),
    reply_state          text NOT NULL DEFAULT 'none' CHECK (reply_state IN ('none', 'replied', 'auto_reply')),
    opt_out_state        text NOT NULL DEFAULT 'none' CHECK (opt_out_state IN ('none', 'opted_out', 'suppressed')),
    failure_reason       text,
    next_action          text,
    attempt_count        integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    provider             text,
    provider_message_id  text,
    sms_encoding         text,
    sms_segments         integer,
    send_after           timestamptz,
    -- The canonical send request (v1), so held and approved messages can be sent again as asked.
    request              jsonb NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    dispatched_at        timestamptz,
    delivered_at         timestamptz
);

CREATE INDEX messages_state_idx ON comms.messages (delivery_state);
CREATE INDEX messages_record_idx ON comms.messages (record_type, record_id);
CREATE INDEX messages_contact_idx ON comms.messages (contact_id, channel, created_at);
CREATE UNIQUE INDEX messages_provider_id_idx ON comms.messages (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- The append-only history of every message: send, failure, retry, hold, reply, approval, pause,
-- opt-out. The database refuses UPDATE, DELETE and TRUNCATE, so the timeline can be trusted.
CREATE TABLE comms.message_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id     uuid REFERENCES comms.messages (id),
    event_type     text NOT NULL,
    actor          text NOT NULL,
    source         text NOT NULL,
    owner          text,
    reason         text,
    recovery_rule  text,
    detail         jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX message_events_message_idx ON comms.message_events (message_id, id);

CREATE FUNCTION comms.refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER message_events_append_only BEFORE UPDATE OR DELETE ON comms.message_events
    FOR EACH ROW EXECUTE FUNCTION comms.refuse_event_change();
CREATE TRIGGER message_events_no_truncate BEFORE TRUNCATE ON comms.message_events
    FOR EACH STATEMENT EXECUTE FUNCTION comms.refuse_event_change();

-- Owner tasks: where a person must act, with the next action and a due time.
CREATE TABLE comms.tasks (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner        text NOT NULL,
    title        text NOT NULL,
    next_action  text NOT NULL,
    reason       text,
    due_at       timestamptz,
    state        text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'done', 'cancelled')),
    record_type  text CHECK (record_type IN ('lead', 'client', 'project', 'report', 'incident', 'approval')),
    record_id    uuid,
    message_id   uuid REFERENCES comms.messages (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    done_at      timestamptz,
    done_by      text
);

CREATE INDEX tasks_open_idx ON comms.tasks (owner, created_at) WHERE state = 'open';

-- Internal material -------------------------------------------------------------------------------

-- Input that could not be accepted, kept byte for byte with the reason, for an operator to read.
CREATE TABLE internal.rejected_input (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue        text NOT NULL,
    routing_key  text NOT NULL,
    reason       text NOT NULL,
    payload      bytea NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX rejected_input_received_idx ON internal.rejected_input (received_at);

-- Raw provider payloads (webhooks, API answers). Internal only: never shown to a client.
CREATE TABLE internal.provider_payloads (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider             text NOT NULL,
    kind                 text NOT NULL,
    message_id           uuid REFERENCES comms.messages (id),
    provider_message_id  text,
    payload              bytea NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX provider_payloads_message_idx ON internal.provider_payloads (provider, provider_message_id);
