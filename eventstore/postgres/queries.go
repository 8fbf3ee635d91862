package postgres

import (
	"fmt"
	"strings"
	"time"

	"github.com/cairn-es/cairn/eventstore"
)

// horizon keeps a log scan behind the oldest transaction still in flight
// anywhere in the cluster. Every transaction with a smaller ID has ended, so
// no row can still appear below the horizon, and an event read once is never
// later preceded by one that was not. This guard is part of every scan of
// the log by position: positionScan and head are built from it, and nothing
// else reads the log in position order.
const horizon = "tx < pg_snapshot_xmin(pg_current_snapshot())"

// eventColumns are the columns scanEvents reads. occurred_at is NULL unless
// the writer gave a time (see migration 002), so it reads as recorded_at.
const eventColumns = "event_id, stream_id, version, tx, seq, type, schema_version, data, metadata, recorded_at, coalesce(occurred_at, recorded_at) AS occurred_at"

// queries holds the SQL of one schema, built once.
type queries struct {
	schema         string
	append         string
	fastAppend     string
	fastAppendOne  string
	existing       string
	readForward    string
	readBackward   string
	streamExists   string
	head           string
	handledCommand string
	loadSnapshot   string
	saveSnapshot   string
	holders        string
	readEvent      string
}

func newQueries(schema string) queries {
	r := strings.NewReplacer("{s}", schema, "{cols}", eventColumns, "{horizon}", horizon)
	return queries{
		schema:        schema,
		fastAppend:    fastAppendQuery(schema),
		fastAppendOne: fastAppendOneQuery(schema),
		append: r.Replace(`SELECT status, stream_id, current_version, first_version, last_version, pos_tx, pos_seq
			FROM {s}.append($1, $2, $3, $4, $5, $6, $7::jsonb[], $8::jsonb[], $9, $10, $11, $12::timestamptz[])`),
		existing: r.Replace(`SELECT count(*) FILTER (WHERE stream_id = $2), count(*),
			min(version) FILTER (WHERE stream_id = $2), max(version) FILTER (WHERE stream_id = $2),
			(array_agg(tx ORDER BY version DESC) FILTER (WHERE stream_id = $2))[1],
			(array_agg(seq ORDER BY version DESC) FILTER (WHERE stream_id = $2))[1]
			FROM {s}.events WHERE event_id = ANY($1)`),
		readForward:  r.Replace(`SELECT {cols} FROM {s}.events WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`),
		readBackward: r.Replace(`SELECT {cols} FROM {s}.events WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT $3`),
		readEvent:    r.Replace(`SELECT {cols} FROM {s}.events WHERE event_id = $1`),
		streamExists: r.Replace(`SELECT EXISTS (SELECT 1 FROM {s}.events WHERE stream_id = $1)`),
		head:         r.Replace(`SELECT tx, seq FROM {s}.events WHERE {horizon} ORDER BY tx DESC, seq DESC LIMIT 1`),
		handledCommand: r.Replace(`SELECT command_id, command_type, payload_hash, stream_id, first_version, last_version, pos_tx, pos_seq
			FROM {s}.commands WHERE command_id = $1`),
		loadSnapshot: r.Replace(`SELECT stream_id, version, type, schema_version, data, taken_at FROM {s}.snapshots WHERE stream_id = $1`),
		saveSnapshot: r.Replace(`INSERT INTO {s}.snapshots AS s (stream_id, version, type, schema_version, data)
			VALUES ($1, $2, $3, $4, $5::jsonb)
			ON CONFLICT (stream_id) DO UPDATE
			SET version = excluded.version, type = excluded.type, schema_version = excluded.schema_version, data = excluded.data, taken_at = now()
			WHERE s.version <= excluded.version`),
		holders: `SELECT pid, backend_xid::text::bigint, coalesce(datname, ''), coalesce(state, ''), xact_start, left(coalesce(query, ''), 200)
			FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
			UNION ALL
			SELECT 0, transaction::text::bigint, database, 'prepared', prepared, gid FROM pg_prepared_xacts
			ORDER BY 5 NULLS LAST`,
	}
}

// logFilter is what narrows a read of the log beyond its position.
type logFilter struct {
	types, categories []string
	since             time.Time // zero: no bound
}

func filterOf(opts eventstore.ReadLogOptions) logFilter {
	return logFilter{types: opts.Types, categories: opts.Categories, since: opts.Since}
}

// logScan builds a read of the log after a position, with optional filters.
func (q queries) logScan(after eventstore.Position, f logFilter, limit int) (string, []any) {
	return q.positionScan(eventColumns, after, f, limit)
}

// logCount builds a count of the events after a position, at most limit.
func (q queries) logCount(after eventstore.Position, f logFilter, limit int) (string, []any) {
	sql, args := q.positionScan("1", after, f, limit)
	return "SELECT count(*) FROM (" + sql + ") AS pending", args
}

// positionScan is the one builder of reads of the log by position; every
// such read goes through it, so none can drop the horizon guard.
func (q queries) positionScan(columns string, after eventstore.Position, f logFilter, limit int) (string, []any) {
	where, args := q.positionWhere(after, f, horizon)
	args = append(args, limit)
	return fmt.Sprintf("SELECT %s FROM %s.events WHERE %s ORDER BY tx, seq LIMIT $%d", columns, q.schema, where, len(args)), args
}

// beyondHorizon is horizon's complement: events committed by transactions
// at or after the oldest one still in flight, which a scan holds back.
const beyondHorizon = "tx >= pg_snapshot_xmin(pg_current_snapshot())"

// logScanHoldback is logScan with a first column, held, telling whether
// events matching the filters are held back beyond the horizon; when the
// page is empty it is the only row (its event columns NULL). The page and
// the test read the same snapshot: one statement.
func (q queries) logScanHoldback(after eventstore.Position, f logFilter, limit int) (string, []any) {
	page, args := q.positionScan(eventColumns, after, f, limit)
	held, _ := q.positionWhere(after, f, beyondHorizon)
	return fmt.Sprintf(`SELECT h.held, p.* FROM (SELECT EXISTS (SELECT 1 FROM %s.events WHERE %s) AS held) h
		LEFT JOIN LATERAL (%s) p ON true ORDER BY p.tx, p.seq`, q.schema, held, page), args
}

// positionWhere is the condition of a scan after a position under guard,
// with the filters; its arguments are numbered from $1 in the same way
// for every guard.
func (q queries) positionWhere(after eventstore.Position, f logFilter, guard string) (string, []any) {
	var b strings.Builder
	args := []any{after.Tx, int64(after.Seq)}
	fmt.Fprintf(&b, "(tx, seq) > ($1::xid8, $2::bigint) AND %s", guard)
	if len(f.types) > 0 {
		args = append(args, f.types)
		fmt.Fprintf(&b, " AND type = ANY($%d)", len(args))
	}
	if len(f.categories) > 0 {
		args = append(args, f.categories)
		fmt.Fprintf(&b, " AND category = ANY($%d)", len(args))
	}
	if !f.since.IsZero() {
		args = append(args, ceilMicrosecond(f.since))
		fmt.Fprintf(&b, " AND recorded_at >= $%d::timestamptz", len(args))
	}
	return b.String(), args
}

// ceilMicrosecond rounds t up to PostgreSQL's precision. pgx sends a time
// truncated to the microsecond; rounding up first keeps "at or after t"
// exact: recorded_at, in whole microseconds, is at or after t exactly when
// it is at or after t rounded up.
func ceilMicrosecond(t time.Time) time.Time {
	c := t.Truncate(time.Microsecond)
	if c.Before(t) {
		c = c.Add(time.Microsecond)
	}
	return c
}
