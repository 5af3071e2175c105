-- Expired tokens (login tokens live 12 hours) are deleted in bounded batches
-- when a token is created: this index makes finding the oldest expired ones
-- a short index range scan instead of a scan of every token.

CREATE INDEX api_tokens_expires_at_idx ON api_tokens (expires_at)
    WHERE expires_at IS NOT NULL;
