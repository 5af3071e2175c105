-- Cluster mode: several nodes on this one database.
--
-- 1. Every change that a node caches sends a notification on the channel
--    `picloud_changes`, from a trigger, so in the change's own transaction:
--    PostgreSQL delivers it on commit (never before the change is visible)
--    and not at all on rollback, and merges identical payloads of one
--    transaction into one. The payload is JSON: `k` (what changed), `app`
--    (whose, when it is one app's), `t` (the transaction's start, in epoch
--    seconds: the receiver's lag). Every node LISTENs and refreshes what it
--    caches; after its listener reconnects it re-reads everything, since
--    notifications sent meanwhile are lost.
--    Job enqueues are not here: a NOTIFY serialises the commits of the
--    transactions that send one, so the store sends one coalesced
--    `{"k":"jobs"}` after its enqueues instead (at most one per 10 ms).
-- 2. `nodes`: each node's row and heartbeat, for `GET /api/v1/admin/cluster`.
-- 3. `invocations.node`: which node wrote a record (its connection's
--    `application_name`), so that a live tail on one node can show the runs
--    of the others without repeating its own.

CREATE FUNCTION picloud_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_json jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_json := to_jsonb(OLD);
    ELSE
        row_json := to_jsonb(NEW);
    END IF;
    PERFORM pg_notify('picloud_changes', json_build_object(
        'k', TG_ARGV[0],
        'app', CASE WHEN TG_ARGV[0] = 'app' THEN row_json ->> 'id' ELSE row_json ->> 'app_id' END,
        't', extract(epoch FROM now())
    )::text);
    RETURN NULL;
END
$$;

-- Deploys, rollbacks, deletes and visibility: the scripts row changes with
-- each (a deploy moves `live_version`).
CREATE TRIGGER scripts_changes AFTER INSERT OR UPDATE OR DELETE ON scripts
    FOR EACH ROW EXECUTE FUNCTION picloud_notify_change('script');

-- Apps created, deleted or renamed, and their limits and settings (not the
-- source byte count a deploy moves: the script's own trigger covers that).
CREATE TRIGGER apps_changes
    AFTER INSERT OR DELETE OR UPDATE OF slug, limits, public_errors, egress_hosts ON apps
    FOR EACH ROW EXECUTE FUNCTION picloud_notify_change('app');

-- Schedules as their editors change them (not each tick's bookkeeping,
-- which the scheduler that fired it knows).
CREATE TRIGGER schedules_changes
    AFTER INSERT OR DELETE OR UPDATE OF script, cron, timezone, payload, enabled, max_attempts
    ON schedules
    FOR EACH ROW EXECUTE FUNCTION picloud_notify_change('schedule');

CREATE TRIGGER subscriptions_changes AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION picloud_notify_change('subscription');

CREATE TRIGGER domains_changes AFTER INSERT OR UPDATE OR DELETE ON domains
    FOR EACH ROW EXECUTE FUNCTION picloud_notify_change('domain');

CREATE TRIGGER env_vars_changes AFTER INSERT OR UPDATE OR DELETE ON env_vars
    FOR EACH ROW EXECUTE FUNCTION picloud_notify_change('env');

CREATE TRIGGER app_data_keys_changes AFTER INSERT OR UPDATE OR DELETE ON app_data_keys
    FOR EACH ROW EXECUTE FUNCTION picloud_notify_change('env');

-- Which node wrote an invocation record: the writing connection's
-- application_name (a node names its pool `picloud-{node id}`).
ALTER TABLE invocations
    ADD COLUMN node text NOT NULL DEFAULT current_setting('application_name');

-- One notification per app per batch of records, naming the writer and the
-- batch's lowest and highest ids: a node with a live tail of that app reads that
-- writer's records past the last it showed.
CREATE FUNCTION picloud_notify_runs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT s.app_id, min(n.id) AS first, max(n.id) AS last
        FROM new_rows n JOIN scripts s ON s.id = n.script_id
        GROUP BY s.app_id
    LOOP
        PERFORM pg_notify('picloud_changes', json_build_object(
            'k', 'runs',
            'app', r.app_id,
            'node', current_setting('application_name'),
            'first', r.first,
            'last', r.last,
            't', extract(epoch FROM now())
        )::text);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER invocations_runs AFTER INSERT ON invocations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION picloud_notify_runs();

-- The nodes of the cluster: each registers at start-up and refreshes its
-- heartbeat (and its stats) every few seconds; a clean stop deletes its row.
CREATE TABLE nodes (
    id           uuid        NOT NULL,
    role         text        NOT NULL,
    address      text        NOT NULL,
    version      text        NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    stats        text        NOT NULL DEFAULT '{}', -- JSON
    CONSTRAINT nodes_pkey PRIMARY KEY (id)
);
