-- Each app's KV state, its environment (plain variables and sealed
-- secrets) and its wrapped data key. All of it goes with its app by
-- ON DELETE CASCADE.
--
-- KV: "now" is the database's `now()`. An expired key stays (and counts in
-- `kv_usage`) until a sweep or a write of the key removes it; every read
-- skips it. Each write is one transaction that first locks the app's row
-- (FOR KEY SHARE, so an app delete waits for it or goes first) and then its
-- `kv_usage` row (FOR UPDATE): that serialises one app's writes, which
-- makes the quota exact and `incr`/`cas` lose no update.

-- Versions never repeat, across keys and apps.
CREATE SEQUENCE kv_version_seq AS bigint;

CREATE TABLE kv (
    app_id     uuid        NOT NULL,
    -- Byte order, like Rust's `str`: listings, cursors and prefix ranges.
    key        text        COLLATE "C" NOT NULL,
    value      text        NOT NULL, -- JSON text
    version    bigint      NOT NULL,
    expires_at timestamptz,
    updated_at timestamptz NOT NULL,
    -- What the entry counts against its app's quota (`KvEntry::size_bytes`).
    bytes      bigint      NOT NULL
        GENERATED ALWAYS AS (octet_length(key) + octet_length(value)) STORED,
    CONSTRAINT kv_pkey PRIMARY KEY (app_id, key),
    CONSTRAINT kv_app_id_fkey
        FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE
);

-- The sweeper: the next expiry, and the expired keys in order.
CREATE INDEX kv_expires_at_idx ON kv (expires_at) WHERE expires_at IS NOT NULL;

-- What each app holds, kept in the transaction of every write; its row is
-- also the lock that serialises the app's writes.
CREATE TABLE kv_usage (
    app_id uuid   NOT NULL,
    keys   bigint NOT NULL DEFAULT 0,
    bytes  bigint NOT NULL DEFAULT 0,
    CONSTRAINT kv_usage_pkey PRIMARY KEY (app_id),
    CONSTRAINT kv_usage_app_id_fkey
        FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
    CONSTRAINT kv_usage_check CHECK (keys >= 0 AND bytes >= 0)
);

-- A variable is either plain (`plain`) or a secret sealed under the app's
-- data key (`nonce` and `ciphertext`), never both.
CREATE TABLE env_vars (
    app_id     uuid        NOT NULL,
    name       text        COLLATE "C" NOT NULL,
    plain      text,
    nonce      bytea,
    ciphertext bytea,
    updated_at timestamptz NOT NULL,
    CONSTRAINT env_vars_pkey PRIMARY KEY (app_id, name),
    CONSTRAINT env_vars_app_id_fkey
        FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE,
    CONSTRAINT env_vars_value_check CHECK (
        (plain IS NOT NULL AND nonce IS NULL AND ciphertext IS NULL)
        OR (plain IS NULL AND nonce IS NOT NULL AND ciphertext IS NOT NULL)
    )
);

-- Each app's data key, sealed under the master key named by its id.
CREATE TABLE app_data_keys (
    app_id        uuid  NOT NULL,
    master_key_id text  NOT NULL,
    nonce         bytea NOT NULL,
    ciphertext    bytea NOT NULL,
    CONSTRAINT app_data_keys_pkey PRIMARY KEY (app_id),
    CONSTRAINT app_data_keys_app_id_fkey
        FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE
);
