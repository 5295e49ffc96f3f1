-- Outreach sequences (definitions, activation, enrolments, the steps sent) and outcomes (booked
-- results, review-request outcomes). docs/sequences.md and docs/outcomes.md explain the rules.

-- Sequence definitions -------------------------------------------------------------------------------

-- One version of a sequence. A draft may be replaced by a new version; once active it never
-- changes (a trigger refuses it). Activation needs an escalation owner and a rollback path.
CREATE TABLE comms.sequences (
    name                         text NOT NULL CHECK (name ~ '^[a-z0-9_.-]{1,100}$'),
    version                      integer NOT NULL CHECK (version > 0),
    audience                     text NOT NULL CHECK (audience IN ('leads', 'client_contacts')),
    -- Which events end an enrolment (reply, opt_out, booked, bounce); a manual stop always does.
    exit_on                      text[] NOT NULL,
    escalation_owner             text CHECK (btrim(escalation_owner) <> ''),
    -- The rollback path: 'cancel' (remaining steps) or 'cancel_and_correct' (and send the
    -- named, approved correction template once to everyone who already got a step).
    rollback                     text CHECK (rollback IN ('cancel', 'cancel_and_correct')),
    correction_template          text,
    correction_version           integer,
    state                        text NOT NULL DEFAULT 'draft'
                                 CHECK (state IN ('draft', 'active', 'superseded', 'rolled_back')),
    -- The definition as it was added (for `show`), normalised.
    definition                   jsonb NOT NULL,
    created_by                   text NOT NULL,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    activated_by                 text,
    activated_at                 timestamptz,
    rolled_back_by               text,
    rolled_back_at               timestamptz,
    rollback_reason              text,
    -- How many enrolments the rollback cancelled and how many corrections went out.
    rollback_cancelled           integer,
    corrections_sent             integer NOT NULL DEFAULT 0,
    PRIMARY KEY (name, version),
    CHECK ((rollback = 'cancel_and_correct') = (correction_template IS NOT NULL)),
    CHECK ((correction_template IS NULL) = (correction_version IS NULL)),
    CHECK (state = 'draft' OR (escalation_owner IS NOT NULL AND rollback IS NOT NULL
                               AND activated_by IS NOT NULL AND activated_at IS NOT NULL))
);

-- At most one active version per name: enrolling by name means that version.
CREATE UNIQUE INDEX sequences_one_active ON comms.sequences (name) WHERE state = 'active';

CREATE TABLE comms.sequence_steps (
    sequence_name     text NOT NULL,
    sequence_version  integer NOT NULL,
    position          integer NOT NULL CHECK (position > 0),
    channel           text NOT NULL CHECK (channel IN ('sms', 'email')),
    kind              text NOT NULL CHECK (kind IN ('outreach', 'review_request')),
    template_name     text NOT NULL,
    template_version  integer NOT NULL,
    -- Either a delay after the previous step (after enrolment for the first) or a fixed local
    -- time of day in the recipient's time zone (the first such time after the previous step).
    delay_seconds     integer CHECK (delay_seconds >= 0),
    local_time        time,
    PRIMARY KEY (sequence_name, sequence_version, position),
    FOREIGN KEY (sequence_name, sequence_version) REFERENCES comms.sequences (name, version),
    FOREIGN KEY (template_name, template_version) REFERENCES comms.templates (name, version),
    CHECK ((delay_seconds IS NULL) <> (local_time IS NULL))
);

-- An active (or rolled back) version is what the owner approved: it never changes. Only the
-- lifecycle columns may move, and only forwards.
CREATE FUNCTION comms.freeze_active_sequence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'sequence_steps' THEN
        IF EXISTS (SELECT 1 FROM comms.sequences s
                   WHERE s.name = COALESCE(OLD.sequence_name, NEW.sequence_name)
                     AND s.version = COALESCE(OLD.sequence_version, NEW.sequence_version)
                     AND s.state <> 'draft') THEN
            RAISE EXCEPTION 'sequence %@% is active and cannot change',
                COALESCE(OLD.sequence_name, NEW.sequence_name),
                COALESCE(OLD.sequence_version, NEW.sequence_version)
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN COALESCE(NEW, OLD);
    END IF;
    IF TG_OP = 'DELETE' AND OLD.state <> 'draft' THEN
        RAISE EXCEPTION 'sequence %@% is active and cannot be deleted', OLD.name, OLD.version
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.state <> 'draft'
       AND (NEW.audience IS DISTINCT FROM OLD.audience
            OR NEW.exit_on IS DISTINCT FROM OLD.exit_on
            OR NEW.escalation_owner IS DISTINCT FROM OLD.escalation_owner
            OR NEW.rollback IS DISTINCT FROM OLD.rollback
            OR NEW.correction_template IS DISTINCT FROM OLD.correction_template
            OR NEW.correction_version IS DISTINCT FROM OLD.correction_version
            OR NEW.definition IS DISTINCT FROM OLD.definition
            OR NEW.activated_by IS DISTINCT FROM OLD.activated_by
            OR NEW.activated_at IS DISTINCT FROM OLD.activated_at
            OR NEW.state = 'draft') THEN
        RAISE EXCEPTION 'sequence %@% is active and cannot change', OLD.name, OLD.version
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN COALESCE(NEW, OLD);
END $$;

CREATE TRIGGER sequences_freeze_active BEFORE UPDATE OR DELETE ON comms.sequences
    FOR EACH ROW EXECUTE FUNCTION comms.freeze_active_sequence();
CREATE TRIGGER sequence_steps_freeze_active BEFORE INSERT OR UPDATE OR DELETE ON comms.sequence_steps
    FOR EACH ROW EXECUTE FUNCTION comms.freeze_active_sequence();

-- The audit of every sequence decision: added, activated, activation refused, rolled back,
-- stopped. Append-only like every history.
CREATE TABLE comms.sequence_audit (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sequence_name     text NOT NULL,
    sequence_version  integer NOT NULL,
    action            text NOT NULL CHECK (action IN ('added', 'activated', 'activation_refused',
                                                      'rolled_back', 'stopped')),
    actor             text NOT NULL,
    reason            text,
    detail            jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER sequence_audit_append_only BEFORE UPDATE OR DELETE ON comms.sequence_audit
    FOR EACH ROW EXECUTE FUNCTION comms.refuse_event_change();
CREATE TRIGGER sequence_audit_no_truncate BEFORE TRUNCATE ON comms.sequence_audit
    FOR EACH STATEMENT EXECUTE FUNCTION comms.refuse_event_change();

-- Enrolments -------------------------------------------------------------------------------------------

-- One contact in one sequence. A contact is enrolled in a sequence (by name) at most once:
-- enrolling again is a no-op that returns this row.
CREATE TABLE comms.sequence_enrolments (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sequence_name     text NOT NULL,
    sequence_version  integer NOT NULL,
    contact_id        uuid NOT NULL REFERENCES comms.contacts (id),
    record_type       text NOT NULL CHECK (record_type IN ('lead', 'client', 'project', 'report',
                                                             'incident', 'approval')),
    record_id         uuid NOT NULL,
    owner             text NOT NULL CHECK (btrim(owner) <> ''),
    source            text NOT NULL CHECK (btrim(source) <> ''),
    state             text NOT NULL DEFAULT 'active'
                      CHECK (state IN ('active', 'completed', 'exited', 'cancelled')),
    -- reply, opted_out, booked, bounced, stopped, rolled_back
    exit_reason       text,
    exit_detail       text,
    -- The next step to send (1-based) and when it is due; NULL once the enrolment ended.
    next_step         integer,
    next_due_at       timestamptz,
    -- A rollback with a correction template: the correction is due for this enrolment.
    correction_due    boolean NOT NULL DEFAULT false,
    correction_sent_at timestamptz,
    enrolled_at       timestamptz NOT NULL,
    ended_at          timestamptz,
    UNIQUE (sequence_name, contact_id),
    FOREIGN KEY (sequence_name, sequence_version) REFERENCES comms.sequences (name, version),
    CHECK ((state = 'active') = (next_step IS NOT NULL AND next_due_at IS NOT NULL)),
    CHECK (state = 'active' OR ended_at IS NOT NULL)
);

CREATE INDEX sequence_enrolments_due_idx ON comms.sequence_enrolments (next_due_at)
    WHERE state = 'active';
CREATE INDEX sequence_enrolments_correction_idx ON comms.sequence_enrolments (sequence_name)
    WHERE correction_due;

-- Each step handed to comms.send: one row per enrolment and step, written in the same
-- transaction that moves the enrolment on, after the broker confirmed the send request.
CREATE TABLE comms.sequence_sends (
    enrolment_id     uuid NOT NULL REFERENCES comms.sequence_enrolments (id),
    -- The step's position, or 0 for the rollback correction.
    step             integer NOT NULL CHECK (step >= 0),
    idempotency_key  text NOT NULL UNIQUE,
    channel          text NOT NULL,
    due_at           timestamptz NOT NULL,
    published_at     timestamptz NOT NULL,
    PRIMARY KEY (enrolment_id, step)
);

-- Outcomes -------------------------------------------------------------------------------------------

-- A result an owner is judged on, reported by upstream (`POST /v1/outcomes`, `outcome.<type>` on
-- comms.sequence) or a tracked link. Idempotent on `id`. Report views are not here: they are the
-- signed views in comms.digest_views.
CREATE TABLE comms.outcomes (
    id                text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    type              text NOT NULL CHECK (type IN ('booked', 'review')),
    -- booked: meeting or sale, optional value and currency.
    booked_kind       text CHECK (booked_kind IN ('meeting', 'sale')),
    value             numeric(14, 2) CHECK (value >= 0),
    currency          text CHECK (currency ~ '^[A-Z]{3}$'),
    -- review: clicked, reviewed (platform, rating where given) or declined.
    review_result     text CHECK (review_result IN ('clicked', 'reviewed', 'declined')),
    platform          text,
    rating            numeric(3, 1) CHECK (rating BETWEEN 0 AND 10),
    -- What it is attributed to: a message, a sequence (by enrolment or name) and/or a record.
    message_id        uuid REFERENCES comms.messages (id),
    enrolment_id      uuid REFERENCES comms.sequence_enrolments (id),
    sequence_name     text,
    record_type       text CHECK (record_type IN ('lead', 'client', 'project', 'report',
                                                  'incident', 'approval')),
    record_id         uuid,
    -- Resolved at recording for the report: owner, client and channel (of the message).
    owner             text NOT NULL,
    client_id         uuid REFERENCES comms.clients (id),
    channel           text,
    source            text NOT NULL,
    occurred_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    -- The outcome as accepted (normalised), to tell a replay from a conflicting reuse of the id.
    payload           jsonb NOT NULL,
    CHECK ((type = 'booked') = (booked_kind IS NOT NULL)),
    CHECK ((type = 'review') = (review_result IS NOT NULL)),
    CHECK (currency IS NULL OR value IS NOT NULL),
    CHECK (message_id IS NOT NULL OR enrolment_id IS NOT NULL OR sequence_name IS NOT NULL
           OR record_id IS NOT NULL),
    CHECK ((record_type IS NULL) = (record_id IS NULL))
);

CREATE INDEX outcomes_owner_idx ON comms.outcomes (owner, occurred_at);
CREATE INDEX outcomes_record_idx ON comms.outcomes (record_type, record_id);

-- The pause scope `sequence:<name>` ----------------------------------------------------------------

ALTER TABLE comms.pauses DROP CONSTRAINT pauses_scope_check;
ALTER TABLE comms.pauses ADD CONSTRAINT pauses_scope_check
    CHECK (scope IN ('global', 'channel', 'kind', 'client', 'sequence'));
