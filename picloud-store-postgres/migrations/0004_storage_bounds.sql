-- Storage bounds: a per-app quota on script sources, and byte-bounded
-- invocation retention.
--
-- `apps.script_source_bytes` is the sum of `script_versions.size_bytes` over
-- the app's scripts. A deploy raises it with an `UPDATE … WHERE
-- script_source_bytes + size <= quota` in the deploy's transaction: the
-- update takes the app row's lock, so concurrent deploys to one app queue and
-- each sees the others' bytes. Deleting a script lowers it in the same
-- transaction, after taking the same lock.

ALTER TABLE script_versions ADD COLUMN size_bytes bigint;
UPDATE script_versions SET size_bytes = octet_length(source);
ALTER TABLE script_versions ALTER COLUMN size_bytes SET NOT NULL;
ALTER TABLE script_versions
    ADD CONSTRAINT script_versions_size_bytes_check CHECK (size_bytes >= 0);

ALTER TABLE apps ADD COLUMN script_source_bytes bigint NOT NULL DEFAULT 0;
UPDATE apps a SET script_source_bytes = coalesce((
    SELECT sum(v.size_bytes)
    FROM script_versions v JOIN scripts s ON s.id = v.script_id
    WHERE s.app_id = a.id), 0);
ALTER TABLE apps
    ADD CONSTRAINT apps_script_source_bytes_check CHECK (script_source_bytes >= 0);

-- A record's bytes as retention counts them: its log lines and its error.
-- Existing rows count their stored JSON, a slight overestimate.
ALTER TABLE invocations ADD COLUMN size_bytes bigint;
UPDATE invocations SET size_bytes = octet_length(logs) + coalesce(octet_length(error), 0);
ALTER TABLE invocations ALTER COLUMN size_bytes SET NOT NULL;
