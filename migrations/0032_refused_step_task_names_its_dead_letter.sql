-- A sequence step refused by the sender before any message was recorded opened a task whose next
-- action said `commsctl message <step key>`, which has no message to show. The refused request is
-- a dead letter (`internal.rejected_input`): the task now names it, with the commands that show
-- why and replay it once the cause is fixed.
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
        PERFORM comms.escalate_sequence_step(step_key, NULL, 'refused', NEW.reason);
        UPDATE comms.tasks t
           SET next_action = format(
                   'the step was refused before it became a message: commsctl dead show %s says why; '
                   'fix the cause and replay it (commsctl dead replay --id %s --reason ...), pause '
                   'the sequence (commsctl pause --sequence %s) or roll it back if more contacts '
                   'are affected', NEW.id, NEW.id, en.sequence_name)
          FROM comms.sequence_escalations x
          JOIN comms.sequence_enrolments en ON en.id = x.enrolment_id
         WHERE x.idempotency_key = step_key AND x.message_id IS NULL
           AND t.id = x.task_id AND t.state = 'open';
    END IF;
    RETURN NULL;
END $$;
