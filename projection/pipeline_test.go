package projection_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/projection"
)

// checkedTotals is a totals model whose table refuses the stream "bad" (a
// failure on the server), whose Apply reads its own row back after every
// third write, and which records the RowsAffected of every upsert.
type checkedTotals struct {
	totals
	mu   sync.Mutex
	tags []int64
}

func (p *checkedTotals) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE totals (stream_id text PRIMARY KEY CHECK (stream_id <> 'bad'), total bigint NOT NULL, events int NOT NULL)`)
	return err
}

const upsertTotal = `INSERT INTO totals (stream_id, total, events) VALUES ($1, ($2::jsonb->>'amount')::bigint, 1)
		ON CONFLICT (stream_id) DO UPDATE SET total = totals.total + excluded.total, events = totals.events + 1`

func (p *checkedTotals) Apply(ctx context.Context, tx pgx.Tx, e eventstore.RecordedEvent) error {
	tag, err := tx.Exec(ctx, upsertTotal, e.StreamID, string(e.Data))
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.tags = append(p.tags, tag.RowsAffected())
	p.mu.Unlock()
	return readBack(ctx, tx, e)
}

// readBack reads the event's row after every third event: it must see the
// write before it.
func readBack(ctx context.Context, tx pgx.Tx, e eventstore.RecordedEvent) error {
	if e.Version%3 != 0 {
		return nil
	}
	var n int64
	if err := tx.QueryRow(ctx, `SELECT events FROM totals WHERE stream_id = $1`, e.StreamID).Scan(&n); err != nil {
		return err
	}
	if n < 1 {
		return eventstore.ErrInvalidEvent // unreachable when reads see the writes
	}
	return nil
}

func (p *checkedTotals) rowsAffected() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int64(nil), p.tags...)
}

// queuedTotals is checkedTotals as a QueueProjector: its upserts go through
// the Queue and its reads through Queue.Tx. It records what each Exec of
// the refused stream returned: nil while the statement was queued (its
// failure comes at the batch's end), the server's error when it ran at
// once.
type queuedTotals struct {
	checkedTotals
	badExecs []error
}

func (p *queuedTotals) Apply(ctx context.Context, tx pgx.Tx, e eventstore.RecordedEvent) error {
	return p.ApplyQueued(ctx, projection.Direct(tx), e)
}

func (p *queuedTotals) ApplyQueued(ctx context.Context, q *projection.Queue, e eventstore.RecordedEvent) error {
	err := q.Exec(ctx, upsertTotal, e.StreamID, string(e.Data))
	if e.StreamID == "bad" {
		p.mu.Lock()
		p.badExecs = append(p.badExecs, err)
		p.mu.Unlock()
	}
	if err != nil {
		return err
	}
	tx, err := q.Tx(ctx)
	if err != nil {
		return err
	}
	return readBack(ctx, tx, e)
}

// queuedGoTotals is totals as a QueueProjector, whose failures (the hook)
// happen in Go while its earlier statements may be in flight.
type queuedGoTotals struct{ totals }

func (p *queuedGoTotals) Apply(ctx context.Context, tx pgx.Tx, e eventstore.RecordedEvent) error {
	return p.ApplyQueued(ctx, projection.Direct(tx), e)
}

func (p *queuedGoTotals) ApplyQueued(ctx context.Context, q *projection.Queue, e eventstore.RecordedEvent) error {
	if p.fail != nil {
		if err := p.fail(e); err != nil {
			return err
		}
	}
	return q.Exec(ctx, upsertTotal, e.StreamID, string(e.Data))
}

// queuedThenRan reports whether an Exec of the refused stream was queued
// (returned nil) and a later one ran at once (returned the server's error).
func (p *queuedTotals) queuedThenRan() (queued, ran bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, err := range p.badExecs {
		queued = queued || err == nil && !ran
		ran = ran || err != nil
	}
	return queued, ran
}

// A statement that fails on the server inside a pipelined batch fails the
// batch (Exec queued it and returned nil); the events are then applied one
// by one, without pipelining (Exec returns the failure), and only the
// failing one meets the policy.
func TestPipelinedServerFailureMeetsThePolicyAlone(t *testing.T) {
	for _, policy := range []projection.Policy{projection.PolicyStop, projection.PolicyDeadLetter} {
		t.Run(policy.String(), func(t *testing.T) {
			e := newEnv(t, projection.Config{BatchSize: 50, Retry: fastRetry, LeaderRetry: 50 * time.Millisecond})
			p := &queuedTotals{checkedTotals: checkedTotals{totals: totals{name: uniqueName(t, "piped"), version: 1}}}
			require.NoError(t, e.mgr.Register(p, projection.WithPolicy(policy)))
			l, before, bad := poisonedLog(t, e)
			want, last, _ := l.snapshot()
			run := startRunner(t, e.mgr)
			ctx := context.Background()
			if policy == projection.PolicyDeadLetter {
				waitFor(t, e.mgr, last, progressWait, p.Name())
				require.Equal(t, without(want, "bad"), modelRows(t, e.store, p.Name()))
				dl, err := e.mgr.DeadLetters(ctx, p.Name())
				require.NoError(t, err)
				require.Len(t, dl, 1)
				require.Equal(t, bad.Position, dl[0].Position)
				require.Contains(t, dl[0].Error, "check constraint")
				require.Equal(t, fastRetry.MaxAttempts, dl[0].Attempts)
			} else {
				st := waitState(t, e.mgr, p.Name(), projection.Failed, progressWait)
				require.Equal(t, before, st.Checkpoint)
				require.NotNil(t, st.FailedPosition)
				require.Equal(t, bad.Position, *st.FailedPosition)
				require.Contains(t, st.Error, "check constraint")
				require.Equal(t, without(without(want, "bad"), "acct-b"), modelRows(t, e.store, p.Name()))
			}
			queued, ran := p.queuedThenRan()
			require.True(t, queued, "the refused statement was first queued in a pipelined batch")
			require.True(t, ran, "then run at once, event by event")
			require.NoError(t, run.stop())
		})
	}
}

// A QueueProjector's batches read their own writes through Queue.Tx; a
// plain Projector gets the transaction, whose Exec reports its rows. Both
// build the same model, live and rebuilt.
func TestQueuedProjectorReadsItsWritesAndAPlainOneKeepsTags(t *testing.T) {
	e := newEnv(t, projection.Config{BatchSize: 50, LeaderRetry: 50 * time.Millisecond})
	piped := &queuedTotals{checkedTotals: checkedTotals{totals: totals{name: uniqueName(t, "piped"), version: 1}}}
	plain := &checkedTotals{totals: totals{name: uniqueName(t, "plain"), version: 1}}
	require.NoError(t, e.mgr.Register(piped))
	require.NoError(t, e.mgr.Register(plain))
	ctx := context.Background()
	l := newLedger()
	for i := range 30 {
		l.add(ctx, t, e.store, []string{"acct-a", "acct-b", "acct-c"}[i%3], i+1)
	}
	want, last, _ := l.snapshot()
	run := startRunner(t, e.mgr)
	waitFor(t, e.mgr, last, progressWait, piped.Name(), plain.Name())
	require.NoError(t, run.stop())
	for _, name := range []string{piped.Name(), plain.Name()} {
		require.Equal(t, want, modelRows(t, e.store, name), name)
	}
	require.NotContains(t, plain.rowsAffected(), int64(0), "a plain projector's Exec reports its row")

	for _, name := range []string{piped.Name(), plain.Name()} {
		rep, err := e.mgr.Rebuild(ctx, name, projection.RebuildOptions{})
		require.NoError(t, err)
		require.True(t, rep.Swapped)
		require.Equal(t, want, modelRows(t, e.store, name), name)
		verifyIdentical(t, e.mgr, name)
	}
}

// Batches longer than a pipeline lot have statements in flight while the
// projector goes on; a failure then, in the projector or on the server,
// still leaves the connection usable and meets the policy alone.
func TestPipelinedFailuresWithStatementsInFlight(t *testing.T) {
	e := newEnv(t, projection.Config{BatchSize: 5000, Retry: fastRetry, LeaderRetry: 50 * time.Millisecond, Policy: projection.PolicyDeadLetter})
	hook := newPoison(false)
	inGo := &queuedGoTotals{totals: totals{name: uniqueName(t, "inflight_go"), version: 1, fail: hook.hook}}
	onServer := &queuedTotals{checkedTotals: checkedTotals{totals: totals{name: uniqueName(t, "inflight_pg"), version: 1}}}
	require.NoError(t, e.mgr.Register(inGo))
	require.NoError(t, e.mgr.Register(onServer))
	ctx := context.Background()
	l := newLedger()
	appendMany := func(stream string, n int) {
		evs := make([]eventstore.Event, n)
		for i := range evs {
			evs[i] = added(i + 1)
		}
		res, err := e.store.Append(ctx, stream, eventstore.Any, evs)
		require.NoError(t, err)
		for i := range evs {
			l.record(stream, int64(i+1), res.Position)
		}
	}
	for i := range 30 {
		appendMany(fmt.Sprintf("acct-%d", i), 50) // 1500 events before the poison
	}
	bad := l.add(ctx, t, e.store, "bad", 100)
	appendMany("acct-z", 20)
	want, last, _ := l.snapshot()

	startRunner(t, e.mgr)
	waitFor(t, e.mgr, last, progressWait, inGo.Name(), onServer.Name())
	for _, name := range []string{inGo.Name(), onServer.Name()} {
		require.Equal(t, without(want, "bad"), modelRows(t, e.store, name), name)
		dl, err := e.mgr.DeadLetters(ctx, name)
		require.NoError(t, err)
		require.Len(t, dl, 1, name)
		require.Equal(t, bad.Position, dl[0].Position, name)
	}
}
