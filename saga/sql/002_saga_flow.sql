-- Sagas under faults and bursts.
--
-- withdrawable: a command queued by an instance's ordinary step. When the
-- instance ends (completes, fails, or compensates), such commands still
-- pending and not leased are withdrawn, so that a step decided before the
-- end is not taken after it. Compensations, and commands a saga sends with
-- saga.Always(), are not withdrawable. Rows queued before this migration
-- keep the old behaviour (sent whatever happens).
ALTER TABLE {{.schema}}.saga_outbox
    ADD COLUMN withdrawable boolean NOT NULL DEFAULT false;

ALTER TABLE {{.schema}}.saga_outbox DROP CONSTRAINT saga_outbox_status_check;
ALTER TABLE {{.schema}}.saga_outbox ADD CONSTRAINT saga_outbox_status_check
    CHECK (status IN ('pending', 'sent', 'rejected', 'dead', 'withdrawn'));

-- A deadline counted from when a command is sent (saga.Deadline): due_at
-- stays NULL until the relay claims the command named by after_command_id
-- to send it, then becomes that moment plus delay_us (again at each
-- attempt). Found through the primary key's (saga, instance_id).
ALTER TABLE {{.schema}}.saga_timeouts ALTER COLUMN due_at DROP NOT NULL;
ALTER TABLE {{.schema}}.saga_timeouts
    ADD COLUMN after_command_id text,
    ADD COLUMN delay_us bigint;

-- The relay claims the head of each instance's queue of pending commands:
-- one ordered scan of this index (it replaces saga_outbox_pending_idx, whose
-- anti-join plan degraded badly when the table's statistics lagged behind
-- a burst).
CREATE INDEX saga_outbox_pending_instance_idx ON {{.schema}}.saga_outbox (saga, instance_id, id)
    WHERE status = 'pending';
DROP INDEX {{.schema}}.saga_outbox_pending_idx;
