-- The portal boundary, continued: PostgreSQL grants TEMPORARY on every database to PUBLIC by
-- default, so the read-only `comms_portal` role could still create temporary tables, and through
-- the `pg_temp` schema temporary functions (and a function named like a view's could shadow it in
-- a session). The fleet itself creates no temporary objects, and a database owner keeps every
-- privilege on its database, so revoking it from PUBLIC takes nothing from the workers.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;

-- PostgreSQL 15 no longer lets PUBLIC create objects in the `public` schema; older servers do.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
