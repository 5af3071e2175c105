-- Custom domains: each hostname belongs to one app. The primary key on the
-- name makes a claim atomic (`INSERT … ON CONFLICT DO NOTHING`), for any
-- app, the owner included. Names arrive lowercase (core's `Hostname`), so
-- case cannot split one name in two. They go with their app.
CREATE TABLE domains (
    -- Byte order, like Rust's `str`: listings by name.
    hostname   text        COLLATE "C" NOT NULL,
    app_id     uuid        NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT domains_pkey PRIMARY KEY (hostname),
    CONSTRAINT domains_app_id_fkey
        FOREIGN KEY (app_id) REFERENCES apps (id) ON DELETE CASCADE
);

-- An app's domains (its list, and the cascade of its delete).
CREATE INDEX domains_app_id_idx ON domains (app_id, hostname);
