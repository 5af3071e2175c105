-- Scripts, their immutable versions, per-app limits and the invocation log.
--
-- A deploy is one statement: an upsert on `scripts` that bumps
-- `latest_version` under the row lock (so concurrent deploys serialise and get
-- distinct numbers) and a data-modifying CTE that inserts the version.

ALTER TABLE apps ADD COLUMN limits text;

CREATE TABLE scripts (
    id             uuid        NOT NULL,
    app_id         uuid        NOT NULL,
    name           text        NOT NULL,
    live_version   integer     NOT NULL,
    latest_version integer     NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CONSTRAINT scripts_pkey PRIMARY KEY (id),
    CONSTRAINT scripts_app_id_name_key UNIQUE (app_id, name),
    CONSTRAINT scripts_app_id_fkey
        FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
    CONSTRAINT scripts_versions_check
        CHECK (live_version BETWEEN 1 AND latest_version),
    CONSTRAINT scripts_name_check CHECK (name ~ '^[A-Za-z0-9_-]{1,64}$')
);

CREATE TABLE script_versions (
    script_id  uuid        NOT NULL,
    version    integer     NOT NULL,
    source     text        NOT NULL,
    created_by uuid        NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT script_versions_pkey PRIMARY KEY (script_id, version),
    CONSTRAINT script_versions_script_id_fkey
        FOREIGN KEY (script_id) REFERENCES scripts (id) ON DELETE CASCADE,
    CONSTRAINT script_versions_created_by_fkey
        FOREIGN KEY (created_by) REFERENCES admin_users (id)
);

CREATE TABLE invocations (
    id          bigserial   NOT NULL,
    script_id   uuid        NOT NULL,
    version     integer     NOT NULL,
    at          timestamptz NOT NULL,
    status      integer     NOT NULL,
    duration_us bigint      NOT NULL,
    logs        text        NOT NULL, -- a JSON array of strings
    error       text,
    CONSTRAINT invocations_pkey PRIMARY KEY (id),
    CONSTRAINT invocations_script_id_fkey
        FOREIGN KEY (script_id) REFERENCES scripts (id) ON DELETE CASCADE
);

-- "Recent invocations of a script", newest first, and the retention trim.
CREATE INDEX invocations_script_id_at_idx ON invocations (script_id, at DESC, id DESC);
