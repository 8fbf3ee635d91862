-- Groups of commands sent together (saga.Concurrent): the command ID of the
-- group's first command, on every command of a group; NULL for a command
-- sent on its own. The relay leases a group's commands together once the
-- first is the oldest unsent command of its instance.
ALTER TABLE {{.schema}}.saga_outbox ADD COLUMN IF NOT EXISTS grp text;
CREATE INDEX IF NOT EXISTS saga_outbox_pending_grp_idx ON {{.schema}}.saga_outbox (grp)
    WHERE status = 'pending' AND grp IS NOT NULL;
