-- Occurred-at and time-bounded log reads. Every statement is idempotent: a
-- schema adopted from the single old version sequence (see
-- migrations.Set.Legacy) may meet this file again.
--
-- occurred_at is when the fact happened in the domain, given by the writer;
-- NULL (the common case, and every event written before this migration)
-- means when it was recorded, so readers coalesce it to recorded_at and
-- nothing is stored twice.
--
-- Adding a nullable column without a default rewrites nothing, but it takes
-- the table's exclusive lock for a moment; waiting for it behind a long
-- reader would stall every append queued behind the wait, so the migration
-- gives up after a few seconds instead (run it again).
SET LOCAL lock_timeout = '5s';
ALTER TABLE {{.schema}}.events ADD COLUMN IF NOT EXISTS occurred_at timestamptz;

-- Log reads bounded by ReadLogOptions.Since filter on recorded_at as they
-- scan from the reader's position: no index, which every append would pay
-- for.

-- The append function gains the occurred-at times: one more array, in the
-- order of the events. The old signature stays (see the end of this file)
-- so that processes of the previous version go on appending during a
-- rolling upgrade.

-- append writes a batch of events to one stream in one statement (and so one
-- round trip and one implicit transaction).
--
-- The stream's advisory lock is taken before anything gives this transaction
-- an ID. A writer waiting for the lock therefore gets its transaction ID only
-- after the previous writer of the stream has committed, so the later version
-- always has the later (tx, seq) position: log order agrees with stream order,
-- while appends to different streams never wait for each other.
CREATE OR REPLACE FUNCTION {{.schema}}.append(
    p_stream        text,
    p_expected_kind smallint, -- 0 any, 1 no stream, 2 stream exists, 3 exact
    p_expected      bigint,
    p_ids           uuid[],
    p_types         text[],
    p_versions      integer[],
    p_data          jsonb[],
    p_metadata      jsonb[],
    p_command_id    text,
    p_command_type  text,
    p_payload_hash  bytea,
    p_occurred_at   timestamptz[] -- NULL elements: when recorded
) RETURNS TABLE (status text, stream_id text, current_version bigint, first_version bigint, last_version bigint, pos_tx xid8, pos_seq bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_current bigint;
    v_count   integer := coalesce(array_length(p_ids, 1), 0);
    v_cmd     {{.schema}}.commands%ROWTYPE;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 7283));
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'cairn append must run in a transaction of its own'
            USING ERRCODE = 'CA001',
                  HINT = 'a transaction that already holds an ID could order this stream''s events out of version order';
    END IF;

    IF p_command_id IS NOT NULL THEN
        SELECT * INTO v_cmd FROM {{.schema}}.commands c WHERE c.command_id = p_command_id;
        IF FOUND THEN
            IF v_cmd.payload_hash IS DISTINCT FROM p_payload_hash THEN
                RETURN QUERY SELECT 'key_reused'::text, NULL::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::xid8, NULL::bigint;
            ELSE
                RETURN QUERY SELECT 'duplicate'::text, v_cmd.stream_id, v_cmd.last_version, v_cmd.first_version, v_cmd.last_version, v_cmd.pos_tx, v_cmd.pos_seq;
            END IF;
            RETURN;
        END IF;
    END IF;

    -- One backward probe of the primary key: no per-stream row to update.
    SELECT max(e.version) INTO v_current FROM {{.schema}}.events e WHERE e.stream_id = p_stream;
    v_current := coalesce(v_current, 0);
    IF NOT (p_expected_kind = 0
            OR (p_expected_kind = 1 AND v_current = 0)
            OR (p_expected_kind = 2 AND v_current > 0)
            OR (p_expected_kind = 3 AND v_current = p_expected)) THEN
        -- A retry of an append that already landed carries its original
        -- expected version; answer it as a retry, not a conflict. Checked
        -- only here, so the common path pays nothing for it.
        IF v_count > 0 AND EXISTS (SELECT 1 FROM {{.schema}}.events e WHERE e.event_id = p_ids[1]) THEN
            RETURN QUERY SELECT 'exists'::text, p_stream, v_current, NULL::bigint, NULL::bigint, NULL::xid8, NULL::bigint;
        ELSE
            RETURN QUERY SELECT 'conflict'::text, p_stream, v_current, NULL::bigint, NULL::bigint, NULL::xid8, NULL::bigint;
        END IF;
        RETURN;
    END IF;

    -- One statement writes the events, the command record and the answer:
    -- every statement of a PL/pgSQL function is an executor run of its own.
    -- Rows reach the insert in ordinality order, so seq follows version.
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO {{.schema}}.events (event_id, stream_id, version, type, schema_version, data, metadata, occurred_at)
        SELECT u.id, p_stream, v_current + u.ord, u.t, u.sv, u.d, u.m, u.oa
        FROM unnest(p_ids, p_types, p_versions, p_data, p_metadata, p_occurred_at) WITH ORDINALITY AS u(id, t, sv, d, m, oa, ord)
        ORDER BY u.ord
        RETURNING seq
    ), last AS (
        SELECT CASE WHEN v_count > 0 THEN pg_current_xact_id() ELSE '0'::xid8 END AS tx,
               coalesce(max(inserted.seq), 0) AS seq
        FROM inserted
    ), recorded AS (
        INSERT INTO {{.schema}}.commands (command_id, command_type, payload_hash, stream_id, first_version, last_version, pos_tx, pos_seq)
        SELECT p_command_id, p_command_type, p_payload_hash, p_stream, v_current + 1, v_current + v_count, last.tx, last.seq
        FROM last WHERE p_command_id IS NOT NULL
    )
    SELECT 'ok'::text, p_stream, v_current + v_count, v_current + 1, v_current + v_count, last.tx, last.seq FROM last;
END
$fn$;

-- The previous version's signature, for its processes still running
-- during a rolling upgrade: the same append, with no occurred-at times.
CREATE OR REPLACE FUNCTION {{.schema}}.append(
    p_stream        text,
    p_expected_kind smallint,
    p_expected      bigint,
    p_ids           uuid[],
    p_types         text[],
    p_versions      integer[],
    p_data          jsonb[],
    p_metadata      jsonb[],
    p_command_id    text,
    p_command_type  text,
    p_payload_hash  bytea
) RETURNS TABLE (status text, stream_id text, current_version bigint, first_version bigint, last_version bigint, pos_tx xid8, pos_seq bigint)
LANGUAGE sql AS $fn$
    SELECT * FROM {{.schema}}.append(p_stream, p_expected_kind, p_expected, p_ids, p_types, p_versions,
        p_data, p_metadata, p_command_id, p_command_type, p_payload_hash, NULL::timestamptz[])
$fn$;
