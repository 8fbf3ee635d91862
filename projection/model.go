package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cairn-es/cairn/eventstore"
)

// A read model's schema holds the projector's tables and this one-row table.
const checkpointTable = "cairn_checkpoint"

func shadowSchema(name string) string { return name + "__shadow" }
func oldSchema(name string) string    { return name + "__old" }

// checkpoint is a model's progress, stored in its own schema.
type checkpoint struct {
	Position      eventstore.Position
	Version       int
	EventsApplied int64
	LastAppliedAt *time.Time
	LastEventAt   *time.Time
}

// querier is what both pgx.Tx and *pgx.Conn offer.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func quote(schema string) string { return pgx.Identifier{schema}.Sanitize() }

// useSchema points the transaction's unqualified names at schema.
func useSchema(ctx context.Context, tx pgx.Tx, schema string) error {
	_, err := tx.Exec(ctx, "SET LOCAL search_path TO "+quote(schema)+", public")
	return err
}

// createModel (re)creates schema empty, with its checkpoint at the start of
// the log and the projector's tables, in tx.
func createModel(ctx context.Context, tx pgx.Tx, schema string, p Projector) error {
	q := quote(schema)
	if err := dropModel(ctx, tx, schema); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+q); err != nil {
		return err
	}
	if err := useSchema(ctx, tx, schema); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `CREATE TABLE `+checkpointTable+` (
		only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
		version         integer NOT NULL,
		pos_tx          xid8    NOT NULL,
		pos_seq         bigint  NOT NULL,
		events_applied  bigint  NOT NULL DEFAULT 0,
		last_applied_at timestamptz,
		last_event_at   timestamptz)`)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+checkpointTable+" (version, pos_tx, pos_seq) VALUES ($1, '0', 0)", p.Version()); err != nil {
		return err
	}
	if err := guard(func() error { return p.Setup(ctx, tx) }); err != nil {
		return fmt.Errorf("projection %s: setup: %w", p.Name(), err)
	}
	return nil
}

// dropModel drops a read-model schema, if there is one. A schema of that
// name without a checkpoint table is not a read model (someone else's
// schema that the projection's name collides with) and is never dropped.
func dropModel(ctx context.Context, q querier, schema string) error {
	if err := ownedOrAbsent(ctx, q, schema); err != nil {
		return err
	}
	_, err := q.Exec(ctx, "DROP SCHEMA IF EXISTS "+quote(schema)+" CASCADE")
	return err
}

// ownedOrAbsent fails when schema exists and is not a read model.
func ownedOrAbsent(ctx context.Context, q querier, schema string) error {
	var foreign bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AND to_regclass($2) IS NULL`,
		schema, quote(schema)+"."+checkpointTable).Scan(&foreign)
	if err != nil {
		return err
	}
	if foreign {
		return fmt.Errorf("%w: schema %s exists and is not a read model (it has no %s table); refusing to replace it", ErrInvalidName, schema, checkpointTable)
	}
	return nil
}

// readCheckpoint reads a model's checkpoint; false when the schema has none.
// forUpdate locks the row, which is how a transaction claims the right to
// move it.
func readCheckpoint(ctx context.Context, q querier, schema string, forUpdate bool) (checkpoint, bool, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", quote(schema)+"."+checkpointTable).Scan(&exists); err != nil {
		return checkpoint{}, false, err
	}
	if !exists {
		return checkpoint{}, false, nil
	}
	sql := "SELECT version, pos_tx, pos_seq, events_applied, last_applied_at, last_event_at FROM " + quote(schema) + "." + checkpointTable
	if forUpdate {
		sql += " FOR UPDATE"
	}
	var c checkpoint
	var seq int64
	if err := q.QueryRow(ctx, sql).Scan(&c.Version, &c.Position.Tx, &seq, &c.EventsApplied, &c.LastAppliedAt, &c.LastEventAt); err != nil {
		return checkpoint{}, false, err
	}
	c.Position.Seq = uint64(seq)
	return c, true, nil
}

// advance moves the checkpoint of the schema tx is using past events.
func advance(ctx context.Context, q *Queue, events []eventstore.RecordedEvent) error {
	last := events[len(events)-1]
	return q.Exec(ctx, "UPDATE "+checkpointTable+` SET pos_tx = $1, pos_seq = $2,
		events_applied = events_applied + $3, last_applied_at = now(), last_event_at = $4`,
		last.Position.Tx, int64(last.Position.Seq), len(events), last.RecordedAt)
}

// lockKey names the advisory locks of a projection: "leader" is held by the
// runner applying it, "write" by every transaction that writes its live
// model or swaps it, "rebuild" by a rebuild in progress.
func lockKey(kind, storeSchema, name string) string {
	return "cairn:" + kind + ":" + storeSchema + ":" + name
}

func writeLock(ctx context.Context, tx pgx.Tx, storeSchema, name string) error {
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", lockKey("write", storeSchema, name))
	return err
}

// errMoved: the checkpoint is not where the caller's subscription is; some
// other writer (a reset, a rebuild's swap) moved it. Reread and go on.
var errMoved = errors.New("projection: checkpoint moved")

// errNotRunning: the projection was paused or failed meanwhile.
var errNotRunning = errors.New("projection: not running")

// guard turns a panic in projector code into an error.
func guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrPanic, r)
		}
	}()
	return fn()
}

// applyEvents hands events to the projector: in one call for a
// BatchProjector, through q (Direct(tx) when nil) for a QueueProjector.
func applyEvents(ctx context.Context, tx pgx.Tx, q *Queue, p Projector, events []eventstore.RecordedEvent) error {
	return guard(func() error {
		if bp, ok := p.(BatchProjector); ok && len(events) > 1 {
			return bp.ApplyBatch(ctx, tx, events)
		}
		qp, queued := p.(QueueProjector)
		if queued && q == nil {
			q = Direct(tx)
		}
		for _, e := range events {
			var err error
			if queued {
				err = qp.ApplyQueued(ctx, q, e)
			} else {
				err = p.Apply(ctx, tx, e)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// pipelines reports whether a batch of n events is applied to p through a
// pipelining Queue: when p is a QueueProjector (and not a BatchProjector)
// and there is more than one event. A lone event (and so every event a
// failed batch is retried as) is applied without pipelining.
func (m *Manager) pipelines(p Projector, n int) bool {
	if _, batch := p.(BatchProjector); batch || n < 2 {
		return false
	}
	_, queued := p.(QueueProjector)
	return queued
}

// applyTx applies events to the model in schema and moves its checkpoint
// past them, in one transaction on conn, provided the checkpoint is still at
// expect. For the live model it also takes the write lock, checks that the
// projection is running, and wakes read-your-writes waiters after commit.
// With pipe, the projector's queued statements and the checkpoint's update
// are pipelined (see Queue).
// The transaction runs in the batch's span (see startBatch).
func (m *Manager) applyTx(ctx context.Context, conn *pgx.Conn, p Projector, schema string, live, pipe bool, expect eventstore.Position, events []eventstore.RecordedEvent) (err error) {
	ctx, span := m.startBatch(ctx, p.Name(), live, events)
	defer func() { endBatch(span, err) }()
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// The write lock, the state, the search path and the checkpoint,
		// in one round trip: the statements run in order, so the state
		// and the checkpoint are read under the write lock.
		//
		// Live, the write lock is what serialises the checkpoint's
		// writers (every one takes it), so the checkpoint is read without
		// FOR UPDATE: a row lock would give the transaction an ID at its
		// start, and a transaction with an ID holds back every reader of
		// the log (the horizon) until it ends. A projector that writes
		// nothing but its checkpoint (an integration publisher, which
		// waits for the broker inside the transaction) then takes its ID
		// only at the end.
		var (
			prelude pgx.Batch
			state   State
			cp      checkpoint
			seq     int64
		)
		if live {
			prelude.Queue("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", lockKey("write", m.schema, p.Name()))
			prelude.Queue(m.q.state, p.Name()).QueryRow(func(row pgx.Row) error { return row.Scan(&state) })
		}
		prelude.Queue("SELECT set_config('search_path', $1, true)", quote(schema)+", public")
		lock := " FOR UPDATE"
		if live {
			lock = ""
		}
		prelude.Queue("SELECT version, pos_tx, pos_seq FROM " + quote(schema) + "." + checkpointTable + lock).
			QueryRow(func(row pgx.Row) error { return row.Scan(&cp.Version, &cp.Position.Tx, &seq) })
		if err := tx.SendBatch(ctx, &prelude).Close(); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
				return errMoved // no checkpoint table: the model was reset or dropped
			}
			return err
		}
		cp.Position.Seq = uint64(seq)
		if live && state != Running {
			return errNotRunning
		}
		if cp.Position != expect || cp.Version != p.Version() {
			return errMoved
		}
		// The checkpoint's update and the notification are pipelined with
		// the projector's statements when those are, and with each other
		// in any case.
		own := pipeline(tx)
		var q *Queue
		if pipe {
			q = own
		}
		if err := applyEvents(ctx, tx, q, p, events); err != nil {
			_ = own.wait() // statements in flight keep the connection busy
			return err
		}
		if err := advance(ctx, own, events); err != nil {
			return err
		}
		return own.flush(ctx)
	})
	if err == nil && live {
		m.waiters.checkpointed()
	}
	return err
}
