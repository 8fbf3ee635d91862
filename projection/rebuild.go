package projection

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/eventstore"
)

// ErrRebuildInProgress: another rebuild of the projection is running.
var ErrRebuildInProgress = errors.New("projection: a rebuild of this projection is already running")

// RebuildOptions selects how a rebuild runs.
type RebuildOptions struct {
	// InPlace replays into the live model in one transaction instead of a
	// shadow copy: readers wait on the model's tables meanwhile, and the
	// transaction holds every log reader's horizon back while it runs.
	InPlace bool
	// Verify builds the shadow copy up to the live model's checkpoint and
	// compares the two row by row, reporting differences, without swapping.
	Verify bool
	// Progress, when set, is called after every batch.
	Progress func(Progress)
}

// Progress of a rebuild.
type Progress struct {
	Projection string
	Done       int64 // events applied so far
	Total      int64 // events in the log for this projection when the rebuild started
	Elapsed    time.Duration
}

// RebuildReport is the outcome of a rebuild.
type RebuildReport struct {
	Projection  string              `json:"projection"`
	Mode        string              `json:"mode"` // "shadow", "in-place" or "verify"
	Events      int64               `json:"events"`
	Position    eventstore.Position `json:"position"`
	Duration    time.Duration       `json:"duration_ns"`
	Swapped     bool                `json:"swapped"`
	Differences []TableDiff         `json:"differences,omitempty"`
}

// Identical reports whether a verification found no difference.
func (r RebuildReport) Identical() bool { return len(r.Differences) == 0 }

// TableDiff is how one read-model table differs between the live model and
// a fresh rebuild. Samples are a few differing rows, as JSON.
type TableDiff struct {
	Table         string   `json:"table"`
	OnlyLive      int64    `json:"only_live"`
	OnlyRebuilt   int64    `json:"only_rebuilt"`
	MissingLive   bool     `json:"missing_live,omitempty"`
	MissingShadow bool     `json:"missing_rebuilt,omitempty"`
	Samples       []string `json:"samples,omitempty"`
}

// Rebuild replays the whole log into the named projection. By default it
// builds a shadow copy while the live model keeps serving, catches up to the
// head, and swaps the copy in with its checkpoint in one transaction. An
// interrupted rebuild leaves the live model untouched and can be rerun.
// A rebuild and the live runner never write the same model at once: every
// write to a live model holds the projection's write lock.
func (m *Manager) Rebuild(ctx context.Context, name string, opts RebuildOptions) (RebuildReport, error) {
	r, err := m.lookup(name)
	if err != nil {
		return RebuildReport{}, err
	}
	if r.sideEffects {
		return RebuildReport{}, fmt.Errorf("%w: %q", ErrSideEffects, name)
	}
	conn, err := pgx.ConnectConfig(ctx, m.pool.Config().ConnConfig.Copy())
	if err != nil {
		return RebuildReport{}, fmt.Errorf("projection %s: rebuild: %w", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, m.q.ensure, name, r.p.Version()); err != nil {
		return RebuildReport{}, fmt.Errorf("projection %s: rebuild: %w", name, err)
	}
	return m.rebuild(ctx, conn, r.p, opts)
}

func (m *Manager) rebuild(ctx context.Context, conn *pgx.Conn, p Projector, opts RebuildOptions) (RebuildReport, error) {
	key := lockKey("rebuild", m.schema, p.Name())
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key).Scan(&got); err != nil {
		return RebuildReport{}, err
	}
	if !got {
		return RebuildReport{}, fmt.Errorf("%w: %s", ErrRebuildInProgress, p.Name())
	}
	defer func() {
		_, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
	}()

	if err := ownedOrAbsent(ctx, conn, p.Name()); err != nil {
		return RebuildReport{}, fmt.Errorf("projection %s: rebuild: %w", p.Name(), err)
	}
	b := &builder{m: m, conn: conn, p: p, opts: opts, started: time.Now()}
	if opts.Progress != nil {
		// Only progress reports need the total; it is counted beside the
		// first batches rather than before them.
		countCtx, cancelCount := context.WithCancel(ctx)
		var counting sync.WaitGroup
		defer func() { cancelCount(); counting.Wait() }()
		b.counted = make(chan int64, 1)
		counting.Go(func() {
			total, err := eventstore.CountLog(countCtx, m.store, eventstore.Start, eventstore.ReadLogOptions{Types: p.EventTypes()})
			if err != nil && countCtx.Err() == nil {
				m.log.Warn("cairn: counting a rebuild's events failed", "projection", p.Name(), "error", err)
			}
			b.counted <- total
		})
	}
	var report RebuildReport
	var err error
	if opts.InPlace && !opts.Verify {
		report, err = b.inPlace(ctx)
	} else {
		report, err = b.shadow(ctx)
	}
	report.Projection = p.Name()
	report.Duration = time.Since(b.started)
	if err != nil {
		return report, fmt.Errorf("projection %s: rebuild: %w", p.Name(), err)
	}
	m.log.Info("cairn: projection rebuilt", "projection", p.Name(), "mode", report.Mode, "events", report.Events, "duration", report.Duration)
	return report, nil
}

type builder struct {
	m       *Manager
	conn    *pgx.Conn
	p       Projector
	opts    RebuildOptions
	started time.Time
	counted chan int64 // the total, once counted; only with a Progress callback
	total   int64      // received from counted by the first report
	done    int64
}

func (b *builder) progress() {
	if b.opts.Progress == nil {
		return
	}
	if b.counted != nil {
		// The first report waits for the count, started with the rebuild.
		b.total = <-b.counted
		b.counted = nil
	}
	b.opts.Progress(Progress{Projection: b.p.Name(), Done: b.done, Total: max(b.total, b.done), Elapsed: time.Since(b.started)})
}

// readAfter reads the projector's next batch after pos; with a bound, only
// events at or before it.
func (b *builder) readAfter(ctx context.Context, pos eventstore.Position, until *eventstore.Position) ([]eventstore.RecordedEvent, error) {
	events, err := b.m.store.ReadLog(ctx, pos, eventstore.ReadLogOptions{Types: b.p.EventTypes(), Limit: b.m.cfg.BatchSize})
	if err != nil || until == nil {
		return events, err
	}
	for i, e := range events {
		if until.Before(e.Position) {
			return events[:i], nil
		}
	}
	return events, nil
}

// page is one batch read ahead, or the error that ended the reading.
type page struct {
	events []eventstore.RecordedEvent
	err    error
}

// readAhead reads the projector's batches after pos (up to until, when
// set) in a goroutine of its own, on the store's pool, one batch ahead of
// the caller: while the caller applies a batch, the next one is read. The
// channel closes after the last batch (the log read to its end, or until),
// after an error, or when ctx ends; stop ends the reading and waits for it.
func (b *builder) readAhead(ctx context.Context, pos eventstore.Position, until *eventstore.Position) (pages <-chan page, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan page) // unbuffered: one batch applied, one read, no more
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		for {
			events, err := b.readAfter(ctx, pos, until)
			if err == nil && len(events) == 0 {
				return
			}
			select {
			case ch <- page{events: events, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			pos = events[len(events)-1].Position
		}
	}()
	return ch, func() { cancel(); <-done }
}

// shadow builds the model in the shadow schema in batches of their own
// transactions, then finishes under the write lock: a last catch-up, then
// a swap (or, to verify, a comparison and a rollback).
func (b *builder) shadow(ctx context.Context) (RebuildReport, error) {
	name, shadow := b.p.Name(), shadowSchema(b.p.Name())
	if err := pgx.BeginFunc(ctx, b.conn, func(tx pgx.Tx) error { return createModel(ctx, tx, shadow, b.p) }); err != nil {
		return RebuildReport{}, err
	}
	// Whatever happens next, a shadow left behind is dropped by the next
	// rebuild's createModel; drop it now unless it was swapped in.
	swapped := false
	defer func() {
		if !swapped {
			b.dropShadow()
		}
	}()

	var until *eventstore.Position
	if b.opts.Verify {
		cp, ok, err := readCheckpoint(ctx, b.conn, name, false)
		if err != nil {
			return RebuildReport{}, err
		}
		if !ok {
			return RebuildReport{}, fmt.Errorf("%w: %s has no live model to verify", ErrUnknownProjection, name)
		}
		until = &cp.Position
	}

	pos := eventstore.Start
	pages, stop := b.readAhead(ctx, pos, until)
	defer stop()
	for pg := range pages {
		if pg.err != nil {
			return RebuildReport{}, pg.err
		}
		err := b.m.applyTx(ctx, b.conn, b.p, shadow, false, b.m.pipelines(b.p, len(pg.events)), pos, pg.events)
		if err != nil && ctx.Err() == nil && b.m.pipelines(b.p, len(pg.events)) {
			// A statement failed in the pipeline: apply the batch again,
			// waiting for each statement, so that a projector relying on
			// what pipelining withholds (CommandTag) still works, and a
			// genuine failure is reported where it happens.
			b.m.log.Warn("cairn: pipelined rebuild batch failed; applying it without pipelining", "projection", b.p.Name(), "error", err)
			err = b.m.applyTx(ctx, b.conn, b.p, shadow, false, false, pos, pg.events)
		}
		if err != nil {
			return RebuildReport{}, err
		}
		pos = pg.events[len(pg.events)-1].Position
		b.done += int64(len(pg.events))
		b.progress()
	}
	if err := ctx.Err(); err != nil {
		return RebuildReport{}, err
	}

	report := RebuildReport{Mode: "shadow"}
	err := pgx.BeginFunc(ctx, b.conn, func(tx pgx.Tx) error {
		if err := writeLock(ctx, tx, b.m.schema, name); err != nil {
			return err
		}
		if b.opts.Verify {
			// The live model may have moved on while we built; bring the
			// copy to exactly its checkpoint before comparing.
			cp, _, err := readCheckpoint(ctx, tx, name, false)
			if err != nil {
				return err
			}
			until = &cp.Position
		}
		if err := useSchema(ctx, tx, shadow); err != nil {
			return err
		}
		for {
			events, err := b.readAfter(ctx, pos, until)
			if err != nil {
				return err
			}
			if len(events) == 0 {
				break
			}
			if err := applyEvents(ctx, tx, nil, b.p, events); err != nil {
				return err
			}
			if err := advance(ctx, Direct(tx), events); err != nil {
				return err
			}
			pos = events[len(events)-1].Position
			b.done += int64(len(events))
		}
		if b.opts.Verify {
			report.Mode = "verify"
			diffs, err := compareSchemas(ctx, tx, name, shadow)
			report.Differences = diffs
			return err
		}
		if err := dropModel(ctx, tx, oldSchema(name)); err != nil {
			return err
		}
		if _, ok, err := readCheckpoint(ctx, tx, name, false); err != nil {
			return err
		} else if ok {
			if _, err := tx.Exec(ctx, "ALTER SCHEMA "+quote(name)+" RENAME TO "+quote(oldSchema(name))); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "ALTER SCHEMA "+quote(shadow)+" RENAME TO "+quote(name)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+quote(oldSchema(name))+" CASCADE"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, b.m.q.setVersion, name, b.p.Version()); err != nil {
			return err
		}
		// The new model applied every event, dead-lettered ones included.
		if _, err := tx.Exec(ctx, b.m.q.clearDeadLetters, name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", b.m.channel, name)
		return err
	})
	if err != nil {
		return report, err
	}
	swapped = !b.opts.Verify
	report.Swapped = swapped
	report.Events = b.done
	report.Position = pos
	b.progress()
	return report, nil
}

// inPlace replaces the live model in one transaction: all or nothing.
func (b *builder) inPlace(ctx context.Context) (RebuildReport, error) {
	name := b.p.Name()
	pos := eventstore.Start
	err := pgx.BeginFunc(ctx, b.conn, func(tx pgx.Tx) error {
		if err := writeLock(ctx, tx, b.m.schema, name); err != nil {
			return err
		}
		if err := createModel(ctx, tx, name, b.p); err != nil {
			return err
		}
		pages, stop := b.readAhead(ctx, pos, nil)
		defer stop()
		for pg := range pages {
			if pg.err != nil {
				return pg.err
			}
			if err := applyEvents(ctx, tx, nil, b.p, pg.events); err != nil {
				return err
			}
			if err := advance(ctx, Direct(tx), pg.events); err != nil {
				return err
			}
			pos = pg.events[len(pg.events)-1].Position
			b.done += int64(len(pg.events))
			b.progress()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, b.m.q.setVersion, name, b.p.Version()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, b.m.q.clearDeadLetters, name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", b.m.channel, name)
		return err
	})
	return RebuildReport{Mode: "in-place", Events: b.done, Position: pos, Swapped: err == nil}, err
}

// dropShadow removes the shadow copy of a rebuild that did not swap. An
// interrupted rebuild usually lost its connection too (pgx closes a
// connection whose context ends mid-query), and its rebuild lock with it;
// then the copy is dropped from another session, under the rebuild lock so
// that a newer rebuild's copy is never dropped.
func (b *builder) dropShadow() {
	drop := "DROP SCHEMA IF EXISTS " + quote(shadowSchema(b.p.Name())) + " CASCADE"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !b.conn.IsClosed() {
		if _, err := b.conn.Exec(ctx, drop); err == nil {
			return
		}
	}
	// A connection of its own: closing it releases the lock whatever fails.
	conn, err := pgx.ConnectConfig(ctx, b.m.pool.Config().ConnConfig.Copy())
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	// The dead session's backend may take a moment to go, releasing its
	// lock; a live rebuild holding the lock longer keeps its copy.
	lockCtx, lockCancel := context.WithTimeout(ctx, 5*time.Second)
	defer lockCancel()
	if _, err := conn.Exec(lockCtx, "SELECT pg_advisory_lock(hashtextextended($1, 0))", lockKey("rebuild", b.m.schema, b.p.Name())); err != nil {
		return
	}
	_, _ = conn.Exec(ctx, drop)
}

// compareSchemas compares every table of two read-model schemas row by row
// (EXCEPT ALL, so duplicates count), the checkpoint table aside.
func compareSchemas(ctx context.Context, tx pgx.Tx, live, rebuilt string) ([]TableDiff, error) {
	tables := map[string][2]bool{}
	rows, err := tx.Query(ctx, `SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN ($1, $2) AND tablename <> $3`, live, rebuilt, checkpointTable)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var schema, table string
		if err := rows.Scan(&schema, &table); err != nil {
			return nil, err
		}
		seen := tables[table]
		seen[0] = seen[0] || schema == live
		seen[1] = seen[1] || schema == rebuilt
		tables[table] = seen
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var diffs []TableDiff
	for table, seen := range tables {
		if !seen[0] || !seen[1] {
			diffs = append(diffs, TableDiff{Table: table, MissingLive: !seen[0], MissingShadow: !seen[1]})
			continue
		}
		l := quote(live) + "." + pgx.Identifier{table}.Sanitize()
		r := quote(rebuilt) + "." + pgx.Identifier{table}.Sanitize()
		d := TableDiff{Table: table}
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM (TABLE "+l+" EXCEPT ALL TABLE "+r+") d").Scan(&d.OnlyLive); err != nil {
			return nil, fmt.Errorf("comparing %s: %w", table, err)
		}
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM (TABLE "+r+" EXCEPT ALL TABLE "+l+") d").Scan(&d.OnlyRebuilt); err != nil {
			return nil, fmt.Errorf("comparing %s: %w", table, err)
		}
		if d.OnlyLive == 0 && d.OnlyRebuilt == 0 {
			continue
		}
		samples, err := tx.Query(ctx, `SELECT 'live: ' || row_to_json(d)::text FROM (SELECT * FROM (TABLE `+l+` EXCEPT ALL TABLE `+r+`) x LIMIT 5) d
			UNION ALL SELECT 'rebuilt: ' || row_to_json(d)::text FROM (SELECT * FROM (TABLE `+r+` EXCEPT ALL TABLE `+l+`) x LIMIT 5) d`)
		if err != nil {
			return nil, err
		}
		d.Samples, err = pgx.CollectRows(samples, pgx.RowTo[string])
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, d)
	}
	return diffs, nil
}
