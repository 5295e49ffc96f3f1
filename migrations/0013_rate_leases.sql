-- One rate limit across sender replicas, and a message's trace context.
--
-- comms.rate_accounts holds one GCRA state per provider account and channel: the theoretical
-- arrival time (tat) of the next send. A sender replica takes tokens from it in leases of a few at
-- a time (comms.take_rate_lease), spends them locally within the lease's lifetime, and lets the
-- rest expire; a replica that dies holding a lease costs the fleet only those tokens, never a
-- stuck limit (docs/operations.md#one-rate-limit-across-replicas).

CREATE TABLE comms.rate_accounts (
    account    text PRIMARY KEY CHECK (btrim(account) <> ''),
    tat        timestamptz NOT NULL,
    leased_at  timestamptz
);

-- Grants up to p_want tokens of p_account now, under a limit of p_per_second with p_tolerance
-- seconds of burst tolerance (GCRA). Returns how many were granted; with none, how long until one
-- would be (wait_seconds). The row lock serialises replicas of one account; the time is read
-- after the lock is held.
CREATE FUNCTION comms.take_rate_lease(
    p_account text,
    p_want integer,
    p_per_second double precision,
    p_tolerance double precision,
    OUT granted integer,
    OUT wait_seconds double precision
) LANGUAGE plpgsql AS $$
DECLARE
    v_tat  timestamptz;
    v_now  timestamptz;
    v_base timestamptz;
    v_room double precision;
BEGIN
    IF p_want < 1 OR p_per_second <= 0 OR p_tolerance < 0 THEN
        RAISE EXCEPTION 'take_rate_lease: want %, per_second %, tolerance % out of range',
            p_want, p_per_second, p_tolerance;
    END IF;
    INSERT INTO comms.rate_accounts (account, tat) VALUES (p_account, '-infinity')
        ON CONFLICT (account) DO NOTHING;
    SELECT tat INTO v_tat FROM comms.rate_accounts WHERE account = p_account FOR UPDATE;
    v_now := clock_timestamp();
    v_base := greatest(v_tat, v_now);
    -- Token k (from 0) of this grant conforms while base + k / rate - now <= tolerance.
    v_room := p_tolerance - extract(epoch FROM v_base - v_now)::double precision;
    IF v_room < 0 THEN
        granted := 0;
        wait_seconds := -v_room;
        RETURN;
    END IF;
    granted := least(p_want, floor(v_room * p_per_second)::integer + 1);
    -- Rounded up to the microsecond, so rounding never grants more than the rate.
    UPDATE comms.rate_accounts
       SET tat = v_base + make_interval(secs => ceil(granted * 1e6 / p_per_second) / 1e6),
           leased_at = v_now
     WHERE account = p_account;
    wait_seconds := 0;
END
$$;

-- The W3C traceparent of the span that recorded the message, so the workers that later handle
-- its delivery callback, its replies and its releases continue the same trace.
ALTER TABLE comms.messages ADD COLUMN traceparent text;
