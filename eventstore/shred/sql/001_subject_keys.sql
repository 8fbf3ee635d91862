-- Per-subject keys of package eventstore/shred. Deleting a row forgets its
-- subject: the personal fields sealed under the key can no longer be read.
CREATE TABLE IF NOT EXISTS {{.schema}}.subject_keys (
    subject    text        PRIMARY KEY CHECK (subject <> ''),
    key_id     uuid        NOT NULL,
    secret     bytea       NOT NULL CHECK (octet_length(secret) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
