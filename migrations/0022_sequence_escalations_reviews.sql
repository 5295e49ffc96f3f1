-- Escalation of a sequence's failing steps to its escalation owner, and review destinations for
-- the tracked links of review requests. docs/sequences.md ("Escalation") and docs/outcomes.md
-- ("Tracked review links") explain the rules.

-- Escalations ------------------------------------------------------------------------------------

-- One row per enrolment and step whose send failed for good: the step message went `failed`,
-- `blocked` or `undelivered`, or the sender refused the step's request outright (no message). The
-- primary key is what makes the escalation owner's task happen once per enrolment and step,
-- whichever worker moved the message and however often.
CREATE TABLE comms.sequence_escalations (
    enrolment_id     uuid NOT NULL REFERENCES comms.sequence_enrolments (id),
    -- The step's position, or 0 for the rollback correction.
    step             integer NOT NULL CHECK (step >= 0),
    idempotency_key  text NOT NULL,
    -- The step message (none when the request was refused before a message was recorded).
    message_id       uuid REFERENCES comms.messages (id),
    -- failed, blocked, undelivered or refused.
    outcome          text NOT NULL CHECK (outcome IN ('failed', 'blocked', 'undelivered', 'refused')),
    reason           text,
    escalation_owner text NOT NULL,
    task_id          uuid NOT NULL REFERENCES comms.tasks (id),
    escalated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (enrolment_id, step)
);

-- Opens the escalation owner's task for a failed step (once), and writes `sequence_escalated`
-- into the timeline of the step message, or of the enrolment's latest step message when the step
-- has none. A key that is not a step key, or whose enrolment does not exist, is ignored.
CREATE FUNCTION comms.escalate_sequence_step(step_key text, message uuid, outcome text, why text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    parts     text[];
    enrolment uuid;
    step_no  integer;
    e         record;
    task      uuid;
    shown_on  uuid;
BEGIN
    parts := regexp_match(step_key,
        '^seq:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):([1-9][0-9]{0,8}|correction)$');
    IF parts IS NULL THEN
        RETURN;
    END IF;
    enrolment := parts[1]::uuid;
    step_no := CASE WHEN parts[2] = 'correction' THEN 0 ELSE parts[2]::integer END;
    IF EXISTS (SELECT 1 FROM comms.sequence_escalations x
               WHERE x.enrolment_id = enrolment AND x.step = step_no) THEN
        RETURN;
    END IF;
    SELECT en.id, en.sequence_name, en.sequence_version, en.record_type, en.record_id, en.owner,
           s.escalation_owner
      INTO e
      FROM comms.sequence_enrolments en
      JOIN comms.sequences s ON s.name = en.sequence_name AND s.version = en.sequence_version
     WHERE en.id = enrolment;
    IF NOT FOUND OR e.escalation_owner IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO comms.tasks (owner, title, next_action, reason, due_at, record_type, record_id, message_id)
    VALUES (e.escalation_owner,
            format('Sequence %s@%s: step %s not sent (%s)', e.sequence_name, e.sequence_version,
                   CASE WHEN step_no = 0 THEN 'correction' ELSE step_no::text END, outcome),
            'check the step''s timeline (commsctl message ' || step_key || '); fix the cause, '
              || 'pause the sequence (commsctl pause --sequence ' || e.sequence_name
              || ') or roll it back if more contacts are affected',
            left(COALESCE(why, outcome), 500), now() + interval '24 hours',
            e.record_type, e.record_id, message)
    RETURNING id INTO task;
    INSERT INTO comms.sequence_escalations
        (enrolment_id, step, idempotency_key, message_id, outcome, reason, escalation_owner, task_id)
    VALUES (enrolment, step_no, step_key, message, outcome, left(why, 500), e.escalation_owner, task)
    ON CONFLICT (enrolment_id, step) DO NOTHING;
    IF NOT FOUND THEN
        -- A concurrent escalation of the same step won: this task is not needed.
        UPDATE comms.tasks SET state = 'cancelled', done_at = now(), done_by = 'comms-sequences'
         WHERE id = task;
        RETURN;
    END IF;
    shown_on := message;
    IF shown_on IS NULL THEN
        SELECT m.id INTO shown_on
          FROM comms.sequence_sends ss JOIN comms.messages m ON m.idempotency_key = ss.idempotency_key
         WHERE ss.enrolment_id = enrolment ORDER BY ss.step DESC LIMIT 1;
    END IF;
    IF shown_on IS NOT NULL THEN
        INSERT INTO comms.message_events (message_id, event_type, actor, source, owner, reason, detail)
        VALUES (shown_on, 'sequence_escalated', 'comms-sequences', 'comms-sequences', e.escalation_owner,
                outcome || COALESCE(': ' || left(why, 500), ''),
                jsonb_build_object('enrolment', enrolment, 'sequence', e.sequence_name,
                                   'version', e.sequence_version, 'step', step_no,
                                   'escalation_owner', e.escalation_owner, 'task', task,
                                   'key', step_key));
    END IF;
END $$;

-- A step message that fails for good. Blocks for the contact's own opt-out or suppression are not
-- failures to escalate: the enrolment exits on them (docs/sequences.md "Exits").
CREATE FUNCTION comms.escalate_failed_step_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM comms.escalate_sequence_step(NEW.idempotency_key, NEW.id, NEW.delivery_state,
                                         NEW.failure_reason);
    RETURN NULL;
END $$;

CREATE TRIGGER messages_escalate_failed_step_update
    AFTER UPDATE OF delivery_state ON comms.messages
    FOR EACH ROW
    WHEN (NEW.delivery_state IN ('failed', 'blocked', 'undelivered')
          AND OLD.delivery_state IS DISTINCT FROM NEW.delivery_state
          AND NEW.idempotency_key LIKE 'seq:%'
          AND NEW.failure_reason IS DISTINCT FROM 'opted_out'
          AND NEW.failure_reason IS DISTINCT FROM 'suppressed')
    EXECUTE FUNCTION comms.escalate_failed_step_message();

CREATE TRIGGER messages_escalate_failed_step_insert
    AFTER INSERT ON comms.messages
    FOR EACH ROW
    WHEN (NEW.delivery_state IN ('failed', 'blocked', 'undelivered')
          AND NEW.idempotency_key LIKE 'seq:%'
          AND NEW.failure_reason IS DISTINCT FROM 'opted_out'
          AND NEW.failure_reason IS DISTINCT FROM 'suppressed')
    EXECUTE FUNCTION comms.escalate_failed_step_message();

-- A step's send request refused by the sender before any message was recorded (for example, the
-- contact has no address on the step's channel): the request is kept in rejected_input; its key
-- says which enrolment and step it was. Input that is not JSON is not a step.
CREATE FUNCTION comms.escalate_refused_step() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    step_key text;
BEGIN
    BEGIN
        step_key := convert_from(NEW.payload, 'UTF8')::jsonb ->> 'idempotency_key';
    EXCEPTION WHEN OTHERS THEN
        RETURN NULL;
    END;
    IF step_key LIKE 'seq:%' AND NOT EXISTS (
        SELECT 1 FROM comms.messages m WHERE m.idempotency_key = step_key) THEN
        PERFORM comms.escalate_sequence_step(step_key, NULL, 'refused', NEW.reason);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER rejected_input_escalate_refused_step
    AFTER INSERT ON internal.rejected_input
    FOR EACH ROW
    WHEN (NEW.queue LIKE '%comms.send.%')
    EXECUTE FUNCTION comms.escalate_refused_step();

-- Review destinations -----------------------------------------------------------------------------

-- Where a client's review requests send people (its Google or other review page). A tracked review
-- link redirects here after recording the click; a review request to a client without one is
-- blocked (`review_destination_missing`).
CREATE TABLE comms.review_destinations (
    client_id  uuid PRIMARY KEY REFERENCES comms.clients (id),
    url        text NOT NULL CHECK (url ~ '^https://[^\s/]+' AND length(url) <= 2000),
    set_by     text NOT NULL CHECK (btrim(set_by) <> ''),
    set_at     timestamptz NOT NULL DEFAULT now()
);
