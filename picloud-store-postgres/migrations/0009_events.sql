-- The event engine: the durable job queue (async requests, cron ticks,
-- events), the attempts of each job, cron schedules and topic
-- subscriptions.
--
-- "Now" is the database's `now()` for everything here, so nodes with skewed
-- clocks agree. A job, a schedule and a subscription go with their script
-- (and app) by ON DELETE CASCADE on `(app_id, script)`, which references
-- `scripts_app_id_name_key`.

CREATE TABLE jobs (
    id           uuid        NOT NULL,
    app_id       uuid        NOT NULL,
    script       text        NOT NULL,
    kind         text        NOT NULL,
    status       text        NOT NULL,
    source       text        NOT NULL, -- JSON of `JobSource`
    -- For cron jobs, from `source`: the tick's unique key.
    schedule     text,
    scheduled_at timestamptz,
    attempt      integer     NOT NULL,
    last_attempt integer     NOT NULL,
    max_attempts integer     NOT NULL,
    lease_ms     integer     NOT NULL,
    run_at       timestamptz NOT NULL,
    lease_until  timestamptz,
    dedupe_key   text,
    size_bytes   bigint      NOT NULL, -- `JobSource::size_bytes`
    result       text,                 -- JSON of `JobResult`
    -- The newest `ATTEMPTS_KEPT` attempt records, oldest first.
    attempts     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    CONSTRAINT jobs_pkey PRIMARY KEY (id),
    CONSTRAINT jobs_app_id_fkey
        FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
    CONSTRAINT jobs_app_id_script_fkey
        FOREIGN KEY (app_id, script) REFERENCES scripts (app_id, name) ON DELETE CASCADE,
    CONSTRAINT jobs_kind_check CHECK (kind IN ('async', 'cron', 'event')),
    CONSTRAINT jobs_status_check
        CHECK (status IN ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
    CONSTRAINT jobs_size_bytes_check CHECK (size_bytes >= 0)
);

-- Each tick fires once: the insert that loses the race does nothing.
CREATE UNIQUE INDEX jobs_tick_key ON jobs (app_id, schedule, scheduled_at)
    WHERE kind = 'cron';
-- An `Idempotency-Key` names one job per script (a key older than the
-- dedupe window is set to NULL by the next enqueue with it).
CREATE UNIQUE INDEX jobs_dedupe_key ON jobs (app_id, script, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
-- The queue cap: count and bytes of an app's held jobs, an index-only scan.
CREATE INDEX jobs_held_idx ON jobs (app_id, status) INCLUDE (size_bytes)
    WHERE status IN ('queued', 'running', 'dead');
-- A claim: the apps with a due job (a skip scan) and each app's earliest.
CREATE INDEX jobs_queued_idx ON jobs (app_id, run_at, id) WHERE status = 'queued';
-- `next_due`: the earliest queued `run_at` and running `lease_until`, and
-- the reclaim of expired leases.
CREATE INDEX jobs_queued_run_at_idx ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_running_lease_until_idx ON jobs (lease_until) WHERE status = 'running';
-- Listings, newest first, of the app or of one script (also the cascade
-- from `scripts`).
CREATE INDEX jobs_app_id_created_at_idx ON jobs (app_id, created_at DESC, id DESC);
CREATE INDEX jobs_app_id_script_idx ON jobs (app_id, script, created_at DESC, id DESC);
-- Retention of finished jobs.
CREATE INDEX jobs_finished_idx ON jobs (app_id, updated_at DESC, id DESC)
    WHERE status IN ('succeeded', 'cancelled');

-- Appends `record` to `attempts` and keeps the newest `keep`.
CREATE FUNCTION picloud_push_attempt(attempts jsonb, record jsonb, keep integer)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(jsonb_agg(t.e ORDER BY t.i), '[]'::jsonb)
    FROM jsonb_array_elements(attempts || jsonb_build_array(record)) WITH ORDINALITY AS t(e, i)
    WHERE t.i > jsonb_array_length(attempts) + 1 - keep
$$;

CREATE TABLE schedules (
    app_id       uuid        NOT NULL,
    name         text        NOT NULL,
    script       text        NOT NULL,
    cron         text        NOT NULL,
    timezone     text        NOT NULL,
    payload      text,
    enabled      boolean     NOT NULL,
    max_attempts integer     NOT NULL,
    next_run_at  timestamptz,
    last_run_at  timestamptz,
    last_job     uuid, -- no foreign key: the job may be pruned
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    CONSTRAINT schedules_pkey PRIMARY KEY (app_id, name),
    CONSTRAINT schedules_app_id_fkey
        FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
    CONSTRAINT schedules_app_id_script_fkey
        FOREIGN KEY (app_id, script) REFERENCES scripts (app_id, name) ON DELETE CASCADE
);

-- The scheduler: enabled schedules by their next tick.
CREATE INDEX schedules_next_run_at_idx ON schedules (next_run_at)
    WHERE enabled AND next_run_at IS NOT NULL;
CREATE INDEX schedules_app_id_script_idx ON schedules (app_id, script);

CREATE TABLE subscriptions (
    app_id       uuid        NOT NULL,
    name         text        NOT NULL,
    topic        text        NOT NULL,
    script       text        NOT NULL,
    max_attempts integer     NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    CONSTRAINT subscriptions_pkey PRIMARY KEY (app_id, name),
    CONSTRAINT subscriptions_app_id_fkey
        FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
    CONSTRAINT subscriptions_app_id_script_fkey
        FOREIGN KEY (app_id, script) REFERENCES scripts (app_id, name) ON DELETE CASCADE
);

-- Fan-out: the subscriptions of an app's topic.
CREATE INDEX subscriptions_app_id_topic_idx ON subscriptions (app_id, topic);
CREATE INDEX subscriptions_app_id_script_idx ON subscriptions (app_id, script);
