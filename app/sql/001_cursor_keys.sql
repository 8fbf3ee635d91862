-- The keys that sign page cursors (query.CursorKeys), kept with the
-- service's data so that every instance, and an instance after a restart,
-- accepts the cursors of the others. A service configured with its own
-- key (CAIRN_CURSOR_KEY) does not read them.
--
-- The newest row's key signs; the row before it still verifies, so a
-- rotation is one INSERT (the key is made by the default) and a rolling
-- restart, and cursors handed out before it keep working:
--
--     INSERT INTO cairn.cursor_keys DEFAULT VALUES;
--
-- The key is two version-4 UUIDs, from PostgreSQL's strong random source:
-- 32 bytes holding 244 random bits.
CREATE TABLE {{.schema}}.cursor_keys (
    generation bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        bytea NOT NULL
        DEFAULT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
        CHECK (octet_length(key) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO {{.schema}}.cursor_keys DEFAULT VALUES;
