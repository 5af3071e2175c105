-- How much of a script error an app's public callers see: `detailed` (the
-- error text, its line, the limit) or `generic` ("script error" and the
-- request id). It goes with its app row.
ALTER TABLE apps ADD COLUMN public_errors text NOT NULL DEFAULT 'detailed';
ALTER TABLE apps ADD CONSTRAINT apps_public_errors_check
    CHECK (public_errors IN ('detailed', 'generic'));
