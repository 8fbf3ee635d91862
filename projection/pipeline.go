package projection

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// pipeQueueMax is how many statements a pipeTx queues before it sends
// them (without waiting for the results): memory stays small, and the server
// works on one lot while the next is queued. 256 ran 10% slower than 1024 in
// the per-event rebuild benchmark; 4096 no faster.
const pipeQueueMax = 1024

// pipeTx is the transaction a plain Projector's Apply is given when a batch
// of several events is applied: Exec does not wait for the server. Its
// statements are queued and sent together, in order, in lots of
// pipeQueueMax (the server runs one lot while the next is queued), and the
// rest when the batch ends or before any call that reads or otherwise needs
// the server (Query, QueryRow, SendBatch, CopyFrom, Prepare, Begin,
// Commit), which waits for every result first: the projector always reads
// its own writes. Hence, in pipelined mode:
//
//   - Exec returns an empty CommandTag (RowsAffected is 0): the tag is not
//     available yet. That is why pipelining is opt-in (WithPipelining), for
//     projectors that never read it.
//   - An Exec's error surfaces at a later call (one that waits for the
//     statements sent before it) or at the end of the batch, which then
//     fails as a whole; the runner then applies the batch's events one at a
//     time, without pipelining, so the failing event is the one that meets
//     the failure policy.
//   - Exec's arguments are encoded when the queue is sent: the projector
//     must not modify them (a reused buffer) after Exec returns.
//
// Exec calls that cannot be queued go straight through after the queue: one
// without arguments (its SQL may hold several statements, which only the
// simple protocol runs), and one choosing its own pgx.QueryExecMode. After
// Conn or LargeObjects, which hand out ways around the queue, everything goes
// straight through.
type pipeTx struct {
	tx       pgx.Tx
	queue    *pgx.Batch
	inflight pgx.BatchResults // sent, results not read yet
	err      error            // the first failure of a send: the transaction is lost
	direct   bool
}

var _ pgx.Tx = (*pipeTx)(nil)

func newPipeTx(tx pgx.Tx) *pipeTx { return &pipeTx{tx: tx, queue: &pgx.Batch{}} }

// send sends the queued statements without waiting for their results,
// once those of the previous send are in: the server executes one lot
// while the projector queues the next.
func (t *pipeTx) send(ctx context.Context) error {
	if err := t.wait(); err != nil || len(t.queue.QueuedQueries) == 0 {
		return err
	}
	q := t.queue
	t.queue = &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(q.QueuedQueries))}
	t.inflight = t.tx.SendBatch(ctx, q)
	return nil
}

// wait reads the results of the statements sent; the connection is free
// for other use after it. A pipeTx must be waited for (flush does) before
// its transaction ends.
func (t *pipeTx) wait() error {
	if t.inflight != nil {
		if err := t.inflight.Close(); err != nil && t.err == nil {
			t.err = err
		}
		t.inflight = nil
	}
	return t.err
}

// flush sends the queued statements and waits for their results.
func (t *pipeTx) flush(ctx context.Context) error {
	if err := t.send(ctx); err != nil {
		return err
	}
	return t.wait()
}

func (t *pipeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.err != nil {
		return pgconn.CommandTag{}, t.err
	}
	queueable := !t.direct && len(args) > 0
	if queueable {
		if _, mode := args[0].(pgx.QueryExecMode); mode {
			queueable = false
		}
	}
	if !queueable {
		if err := t.flush(ctx); err != nil {
			return pgconn.CommandTag{}, err
		}
		return t.tx.Exec(ctx, sql, args...)
	}
	t.queue.Queue(sql, args...)
	if len(t.queue.QueuedQueries) >= pipeQueueMax {
		if err := t.send(ctx); err != nil {
			return pgconn.CommandTag{}, err
		}
	}
	return pgconn.CommandTag{}, nil
}

func (t *pipeTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.flush(ctx); err != nil {
		return errRows{err}, err
	}
	return t.tx.Query(ctx, sql, args...)
}

func (t *pipeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.flush(ctx); err != nil {
		return errRows{err}
	}
	return t.tx.QueryRow(ctx, sql, args...)
}

func (t *pipeTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.flush(ctx); err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	return t.tx.SendBatch(ctx, b)
}

func (t *pipeTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.flush(ctx); err != nil {
		return 0, err
	}
	return t.tx.CopyFrom(ctx, table, columns, src)
}

func (t *pipeTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.tx.Prepare(ctx, name, sql)
}

// Begin starts a savepoint on the underlying transaction; statements in it
// are not pipelined.
func (t *pipeTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.tx.Begin(ctx)
}

func (t *pipeTx) Commit(ctx context.Context) error {
	if err := t.flush(ctx); err != nil {
		return err
	}
	return t.tx.Commit(ctx)
}

func (t *pipeTx) Rollback(ctx context.Context) error {
	_ = t.wait()
	t.queue = &pgx.Batch{}
	return t.tx.Rollback(ctx)
}

// LargeObjects and Conn work on the underlying transaction: the queue is sent
// first (a failure is reported by the next call), and nothing is queued
// after.
func (t *pipeTx) LargeObjects() pgx.LargeObjects {
	t.goDirect()
	return t.tx.LargeObjects()
}

func (t *pipeTx) Conn() *pgx.Conn {
	t.goDirect()
	return t.tx.Conn()
}

func (t *pipeTx) goDirect() {
	_ = t.flush(context.Background())
	t.direct = true
}

// errRows is the pgx.Rows and pgx.Row of a query that was never sent.
type errRows struct{ err error }

func (r errRows) Close()                                       {}
func (r errRows) Err() error                                   { return r.err }
func (r errRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (r errRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (r errRows) Next() bool                                   { return false }
func (r errRows) Scan(...any) error                            { return r.err }
func (r errRows) Values() ([]any, error)                       { return nil, r.err }
func (r errRows) RawValues() [][]byte                          { return nil }
func (r errRows) Conn() *pgx.Conn                              { return nil }
func (r errRows) TypeMap() *pgtype.Map                         { return nil }
