-- Who may call a script's endpoint: `public` (anyone) or `private` (only
-- callers with a PiCloud token holding AppView on its app). And script
-- names follow the one rule now: lowercase a-z0-9_-, 1–63 characters,
-- starting with a letter (the service refuses others). The old CHECK stays
-- wide, so that a name an earlier version accepted still reads back.
ALTER TABLE scripts ADD COLUMN visibility text NOT NULL DEFAULT 'public';
ALTER TABLE scripts ADD CONSTRAINT scripts_visibility_check
    CHECK (visibility IN ('public', 'private'));
