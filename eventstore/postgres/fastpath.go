package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cairn-es/cairn/eventstore"
)

// The fast path appends with an exact expected version (Exact(n) or
// NoStream) in one plain statement: no function call, no advisory lock, no
// separate version probe. It is safe without the lock because the version it
// builds on was committed before this statement's snapshot, so this
// transaction's ID, assigned later, is larger than its writer's: log order
// still follows stream order. Two writers of the same version collide on the
// (stream_id, version) primary key and one fails. Whenever the fast path does
// not simply succeed (a version mismatch, a recorded command, any unique
// violation), Append falls back to the append function, which takes the
// stream lock and gives the precise answer.
const fastAppendSQL = `WITH cur AS (
    SELECT coalesce(max(version), 0) AS v FROM {s}.events WHERE stream_id = $1
), go AS (
    SELECT v FROM cur
    WHERE v = $2 AND ($8::text IS NULL OR NOT EXISTS (SELECT 1 FROM {s}.commands WHERE command_id = $8))
), inserted AS (
    INSERT INTO {s}.events (event_id, stream_id, version, type, schema_version, data, metadata, occurred_at)
    SELECT u.id, $1, go.v + u.ord, u.t, u.sv, u.d, u.m, u.oa
    FROM go, unnest($3::uuid[], $4::text[], $5::integer[], $6::jsonb[], $7::jsonb[], $11::timestamptz[]) WITH ORDINALITY AS u(id, t, sv, d, m, oa, ord)
    ORDER BY u.ord
    RETURNING seq
), last AS (
    SELECT count(*) AS n, max(seq) AS seq FROM inserted
), stamped AS (
    SELECT n, seq, CASE WHEN n > 0 THEN pg_current_xact_id() END AS tx FROM last
), recorded AS (
    INSERT INTO {s}.commands (command_id, command_type, payload_hash, stream_id, first_version, last_version, pos_tx, pos_seq)
    SELECT $8, $9, $10, $1, $2 + 1, $2 + stamped.n, stamped.tx, stamped.seq
    FROM stamped WHERE $8::text IS NOT NULL AND stamped.n > 0
)
SELECT n, tx, seq FROM stamped`

// fastAppendOneSQL is fastAppendSQL for the most common append, one event,
// with scalar parameters instead of arrays to build, send and unnest.
const fastAppendOneSQL = `WITH cur AS (
    SELECT coalesce(max(version), 0) AS v FROM {s}.events WHERE stream_id = $1
), inserted AS (
    INSERT INTO {s}.events (event_id, stream_id, version, type, schema_version, data, metadata, occurred_at)
    SELECT $3::uuid, $1, cur.v + 1, $4::text, $5::integer, $6::jsonb, $7::jsonb, $11::timestamptz
    FROM cur
    WHERE cur.v = $2 AND ($8::text IS NULL OR NOT EXISTS (SELECT 1 FROM {s}.commands WHERE command_id = $8))
    RETURNING seq
), stamped AS (
    SELECT 1::bigint AS n, seq, pg_current_xact_id() AS tx FROM inserted
), recorded AS (
    INSERT INTO {s}.commands (command_id, command_type, payload_hash, stream_id, first_version, last_version, pos_tx, pos_seq)
    SELECT $8, $9, $10, $1, $2 + 1, $2 + 1, stamped.tx, stamped.seq
    FROM stamped WHERE $8::text IS NOT NULL
)
SELECT coalesce(max(n), 0), max(tx), max(seq) FROM stamped`

func fastAppendQuery(schema string) string { return strings.ReplaceAll(fastAppendSQL, "{s}", schema) }

func fastAppendOneQuery(schema string) string {
	return strings.ReplaceAll(fastAppendOneSQL, "{s}", schema)
}

// appendFast tries the fast path; ok is false when Append must fall back.
// args are appendArgs' output.
func (s *Store) appendFast(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, n int, args []any) (res eventstore.AppendResult, ok bool, err error) {
	k := expected.Kind()
	if n == 0 || (k != eventstore.KindExact && k != eventstore.KindNoStream) {
		return res, false, nil
	}
	var inserted int64
	var tx *uint64
	var seq *int64
	if n == 1 {
		err = s.pool.QueryRow(ctx, s.q.fastAppendOne, args[0], expected.Version(), args[3].([][16]byte)[0], args[4].([]string)[0],
			args[5].([]int32)[0], args[6].([]string)[0], args[7].([]string)[0], args[8], args[9], args[10], args[11].([]*time.Time)[0]).Scan(&inserted, &tx, &seq)
	} else {
		err = s.pool.QueryRow(ctx, s.q.fastAppend, args[0], expected.Version(), args[3], args[4], args[5], args[6], args[7], args[8], args[9], args[10], args[11]).
			Scan(&inserted, &tx, &seq)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return res, false, nil
	}
	if err != nil {
		return res, false, fmt.Errorf("postgres: append to %q: %w", streamID, err)
	}
	if inserted == 0 {
		return res, false, nil
	}
	return eventstore.AppendResult{
		StreamID:     streamID,
		FirstVersion: expected.Version() + 1,
		Version:      expected.Version() + inserted,
		Position:     eventstore.Position{Tx: *tx, Seq: uint64(*seq)},
	}, true, nil
}
