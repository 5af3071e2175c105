-- A lighter write path for the job queue (each job is an insert and two
-- non-HOT updates, so every index and row lock is paid three times).
--
-- A job's script names its app: the `(app_id, script)` key, which cascades
-- from `scripts` (which cascade from `apps`), is enough. The app key took a
-- second `FOR KEY SHARE` row lock on every insert, all on one hot `apps`
-- row.
ALTER TABLE jobs DROP CONSTRAINT jobs_app_id_fkey;

-- `next_due` reads each app's earliest queued job from `jobs_queued_idx`
-- (one descent per app with queued jobs), so this index is not needed.
DROP INDEX jobs_queued_run_at_idx;
