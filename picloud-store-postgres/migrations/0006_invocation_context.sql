-- Invocation records say what started them and for which request, and where
-- a script error is: the trigger, the request id (the response's
-- `x-request-id`), method, path and query, and the error's line and column.
-- Existing rows are HTTP runs whose request is unknown.

ALTER TABLE invocations ADD COLUMN request_id text NOT NULL DEFAULT '';
ALTER TABLE invocations ADD COLUMN trigger text NOT NULL DEFAULT 'http';
ALTER TABLE invocations ADD COLUMN method text;
ALTER TABLE invocations ADD COLUMN path text;
ALTER TABLE invocations ADD COLUMN query text;
ALTER TABLE invocations ADD COLUMN line integer;
ALTER TABLE invocations ADD COLUMN col integer;

-- "An app's newest invocations", across its scripts: the app is reached
-- through `scripts`; this index serves the per-request-id lookup.
CREATE INDEX invocations_request_id_idx ON invocations (request_id) WHERE request_id <> '';
