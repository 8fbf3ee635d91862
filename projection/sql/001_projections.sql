-- Control rows for projections. A projection's checkpoint is not here: it
-- lives in the projection's own read-model schema (table cairn_checkpoint),
-- so that swapping in a rebuilt schema swaps its checkpoint with it.
CREATE TABLE {{.schema}}.projections (
    name            text        PRIMARY KEY,
    version         integer     NOT NULL,
    state           text        NOT NULL DEFAULT 'running'
                    CHECK (state IN ('running', 'paused', 'failed')),
    error           text,
    failed_event_id uuid,
    failed_pos_tx   xid8,
    failed_pos_seq  bigint,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Events a projection gave up on under the dead-letter policy.
CREATE TABLE {{.schema}}.dead_letters (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection      text        NOT NULL,
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    pos_tx          xid8        NOT NULL,
    pos_seq         bigint      NOT NULL,
    event_type      text        NOT NULL,
    error           text        NOT NULL,
    attempts        integer     NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    CONSTRAINT dead_letters_event_key UNIQUE (projection, event_id)
);
