-- Saga instances: one row per (saga, correlation key), holding the saga's
-- state as JSON and the compensations its completed steps registered
-- (a stack, last in first out). Every message an instance handles locks
-- its row first, so an instance handles one message at a time.
CREATE TABLE {{.schema}}.saga_instances (
    saga          text        NOT NULL,
    instance_id   text        NOT NULL,
    status        text        NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'completed', 'failed')),
    state         jsonb       NOT NULL,
    compensations jsonb       NOT NULL DEFAULT '[]',
    outcome       text        NOT NULL DEFAULT '',
    correlation_id text       NOT NULL DEFAULT '',
    version       bigint      NOT NULL DEFAULT 1,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    PRIMARY KEY (saga, instance_id)
);

CREATE INDEX saga_instances_status_idx ON {{.schema}}.saga_instances (saga, status, updated_at);

-- Commands sagas decided to send, written in the transaction that made the
-- decision and sent afterwards by the relay. command_id is derived from
-- the saga, the instance and the message that caused the command, so a
-- redelivered message writes the same ID and the dispatcher's command log
-- turns a second send into a no-op. The relay sends one instance's
-- commands in id order, one at a time.
CREATE TABLE {{.schema}}.saga_outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga            text        NOT NULL,
    instance_id     text        NOT NULL,
    command_id      text        NOT NULL,
    command_type    text        NOT NULL,
    payload         jsonb       NOT NULL,
    correlation_id  text        NOT NULL,
    causation_id    text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'rejected', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until   timestamptz,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    CONSTRAINT saga_outbox_command_key UNIQUE (command_id)
);

CREATE INDEX saga_outbox_pending_idx ON {{.schema}}.saga_outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX saga_outbox_instance_idx ON {{.schema}}.saga_outbox (saga, instance_id, id);

-- Deadlines. A timeout fires by being deleted in the transaction that
-- hands it to its instance, so it fires exactly once.
CREATE TABLE {{.schema}}.saga_timeouts (
    saga        text        NOT NULL,
    instance_id text        NOT NULL,
    name        text        NOT NULL,
    due_at      timestamptz NOT NULL,
    PRIMARY KEY (saga, instance_id, name)
);

CREATE INDEX saga_timeouts_due_idx ON {{.schema}}.saga_timeouts (due_at);

-- Events an event handler has processed, by event ID: a redelivery (a reset
-- checkpoint, a retried dead letter) finds its row and is not handled twice.
CREATE TABLE {{.schema}}.handled_events (
    handler    text        NOT NULL,
    event_id   uuid        NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (handler, event_id)
);
