-- A retry asked for by a process that does not run the projection's code
-- (the command line): the process leading the projection retries the dead
-- letter and clears the request.
ALTER TABLE {{.schema}}.dead_letters ADD COLUMN IF NOT EXISTS retry_requested_at timestamptz;
CREATE INDEX IF NOT EXISTS dead_letters_retry_requested_idx ON {{.schema}}.dead_letters (projection)
    WHERE retry_requested_at IS NOT NULL;
