-- A sequence step refused by the sender before any message was recorded opened a task whose next
-- action said `commsctl message <step key>`, which has no message to show. The refused request is
-- a dead letter (`internal.rejected_input`): the task (and its `task.opened` event) now names it,
-- with the commands that show why and replay it once the cause is fixed. The refusal trigger
-- hands the dead letter's id over in a transaction-local setting.
CREATE OR REPLACE FUNCTION comms.escalate_sequence_step(step_key text, message uuid, outcome text, why text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    parts     text[];
    enrolment uuid;
    step_no  integer;
    e         record;
    task      uuid;
    shown_on  uuid;
    -- The dead letter of a step refused before it became a message, when the caller set it.
    dead_letter text := COALESCE(current_setting('comms.refused_dead_letter', true), '');
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
            CASE WHEN message IS NULL AND dead_letter <> '' THEN
                format('the step was refused before it became a message: commsctl dead show %s '
                       'says why; fix the cause and replay it (commsctl dead replay --id %s '
                       '--reason ...), pause the sequence (commsctl pause --sequence %s) or roll '
                       'it back if more contacts are affected', dead_letter, dead_letter,
                       e.sequence_name)
            ELSE
                'check the step''s timeline (commsctl message ' || step_key || '); fix the cause, '
                  || 'pause the sequence (commsctl pause --sequence ' || e.sequence_name
                  || ') or roll it back if more contacts are affected'
            END,
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

CREATE OR REPLACE FUNCTION comms.escalate_refused_step() RETURNS trigger LANGUAGE plpgsql AS $$
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
        PERFORM set_config('comms.refused_dead_letter', NEW.id::text, true);
        PERFORM comms.escalate_sequence_step(step_key, NULL, 'refused', NEW.reason);
        PERFORM set_config('comms.refused_dead_letter', '', true);
    END IF;
    RETURN NULL;
END $$;

-- Cancelling a message (erasure, a sequence's rollback) closes the open tasks about it: found by
-- message, not by scanning every task.
CREATE INDEX tasks_open_message_idx ON comms.tasks (message_id) WHERE state = 'open';
