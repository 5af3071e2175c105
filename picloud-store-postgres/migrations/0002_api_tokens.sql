-- API tokens. Only the SHA-256 of each secret is stored (`token_hash`); the
-- secret is shown once when issued. A token may be scoped to one app with a
-- maximum role; deleting the app or the user deletes their tokens.

CREATE TABLE api_tokens (
    id             uuid        NOT NULL,
    user_id        uuid        NOT NULL,
    name           text        NOT NULL,
    token_hash     text        NOT NULL,
    scope_app_id   uuid,
    scope_max_role text,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz,
    CONSTRAINT api_tokens_pkey PRIMARY KEY (id),
    -- Also the index of the hot path: every request looks its token up by hash.
    CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash),
    CONSTRAINT api_tokens_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES admin_users (id) ON DELETE CASCADE,
    CONSTRAINT api_tokens_scope_app_id_fkey
        FOREIGN KEY (scope_app_id) REFERENCES apps (id) ON DELETE CASCADE,
    CONSTRAINT api_tokens_scope_check
        CHECK ((scope_app_id IS NULL) = (scope_max_role IS NULL)),
    CONSTRAINT api_tokens_scope_max_role_check
        CHECK (scope_max_role IN ('viewer', 'editor', 'app_admin'))
);

-- "My tokens", newest first.
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id, created_at DESC);
