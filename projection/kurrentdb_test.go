package projection_test

// The projection daemon with the log in KurrentDB and the read models in
// PostgreSQL. The log is the in-process stand-in of eventstore/kurrentdb's
// tests (kurrentdbtest), or the real server KURRENTDB_URL names; the read
// side's schema holds only the read side's tables (app.ReadSideMigrations).

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/kurrentdb/kurrentdbtest"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/migrations"
	"github.com/cairn-es/cairn/pgdb"
	"github.com/cairn-es/cairn/projection"
)

// readSideSchema is a fresh schema holding only what the read side
// migrates (no event store tables), dropped when the test ends, with the
// read models its projections record.
func readSideSchema(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	schema := fmt.Sprintf("t_%x", pgtest.Suffix())
	pgtest.DropSchemas(t, pool, schema)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, migrations.UpPool(ctx, pool, schema, app.ReadSideMigrations()...))
	pgtest.DropStoreModels(t, pool, schema)
	var events bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{schema, "events"}.Sanitize()).Scan(&events))
	require.False(t, events, "the read side's schema has no event table")
	return schema
}

// kurrentManager is a projection manager reading log and keeping its
// state in schema on pool.
func kurrentManager(t *testing.T, log eventstore.Log, pool *pgxpool.Pool, schema string, cfg projection.Config) *projection.Manager {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLog
	}
	mgr, err := projection.NewManager(log, pgdb.DB{Pool: pool, Schema: schema}, cfg)
	require.NoError(t, err)
	t.Cleanup(mgr.Close)
	return mgr
}

// totalsOf reads a totals model.
func totalsOf(t tester, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, schema string) map[string][2]int64 {
	t.Helper()
	rows, err := q.Query(context.Background(), "SELECT stream_id, total, events FROM "+pgx.Identifier{schema, "totals"}.Sanitize())
	require.NoError(t, err)
	out := map[string][2]int64{}
	for rows.Next() {
		var id string
		var total, n int64
		require.NoError(t, rows.Scan(&id, &total, &n))
		out[id] = [2]int64{total, n}
	}
	require.NoError(t, rows.Err())
	return out
}

// modelState is a read model as one transaction saw it: its checkpoint
// and its rows, together.
type modelState struct {
	checkpoint eventstore.Position
	applied    int64
	rows       map[string][2]int64
}

// observe reads the model's checkpoint and rows in one repeatable-read
// transaction, so both come from the same snapshot; false when the model
// does not exist yet.
func observe(ctx context.Context, pool *pgxpool.Pool, name string) (modelState, bool, error) {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return modelState{}, false, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{name, "totals"}.Sanitize()).Scan(&exists); err != nil || !exists {
		return modelState{}, false, err
	}
	var s modelState
	var seq int64
	err = tx.QueryRow(ctx, "SELECT pos_tx, pos_seq, events_applied FROM "+pgx.Identifier{name, "cairn_checkpoint"}.Sanitize()).Scan(&s.checkpoint.Tx, &seq, &s.applied)
	if err != nil {
		return modelState{}, false, err
	}
	s.checkpoint.Seq = uint64(seq)
	rows, err := tx.Query(ctx, "SELECT stream_id, total, events FROM "+pgx.Identifier{name, "totals"}.Sanitize())
	if err != nil {
		return modelState{}, false, err
	}
	s.rows = map[string][2]int64{}
	var id string
	var total, n int64
	_, err = pgx.ForEachRow(rows, []any{&id, &total, &n}, func() error {
		s.rows[id] = [2]int64{total, n}
		return nil
	})
	return s, err == nil, err
}

// readWholeLog reads the log page by page.
func readWholeLog(t *testing.T, log eventstore.LogReader) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	after := eventstore.Start
	for {
		page, err := log.ReadLog(context.Background(), after, eventstore.ReadLogOptions{Limit: 200})
		require.NoError(t, err)
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Position
	}
}

// expectedAt is what a totals model must hold at checkpoint cp, computed
// from the log itself: the sums of the Added events at or before cp.
func expectedAt(log []eventstore.RecordedEvent, cp eventstore.Position) (map[string][2]int64, int64) {
	rows := map[string][2]int64{}
	var n int64
	for _, e := range log {
		if cp.Before(e.Position) {
			break
		}
		var d struct{ Amount int64 }
		if err := json.Unmarshal(e.Data, &d); err != nil {
			panic(err) // the test appended these events: they decode
		}
		r := rows[e.StreamID]
		rows[e.StreamID] = [2]int64{r[0] + d.Amount, r[1] + 1}
		n++
	}
	return rows, n
}

// Writers append to KurrentDB while two runners, each with its own
// KurrentDB client and PostgreSQL pool, compete for the projection; the
// leader's PostgreSQL session is killed and runners are restarted under
// them. Every event is applied exactly once, and every snapshot of the
// model taken meanwhile equals the log's events up to the checkpoint of
// the same snapshot: the checkpoint moves in the transaction that applies
// the events.
func TestKurrentDBLogProjectedExactlyOnceWithTheCheckpointInTheModelTransaction(t *testing.T) {
	k := kurrentdbtest.NewTarget(t)
	writer := k.Open(t)
	admin := pgtest.Pool(t, 10)
	schema := readSideSchema(t, admin)
	name := uniqueName(t, "kdb")
	cfg := projection.Config{BatchSize: 20, LeaderRetry: 50 * time.Millisecond, Retry: fastRetry}
	members := make([]*projection.Manager, 2)
	runs := make([]*runner, 2)
	for i := range members {
		members[i] = kurrentManager(t, k.Open(t), namedPool(t, fmt.Sprintf("cairn-test-%c-%s", 'a'+i, name), 10), schema, cfg)
		require.NoError(t, members[i].Register(&totals{name: name, version: 1}))
		runs[i] = startRunner(t, members[i])
	}

	l := newLedger()
	const writers, perWriter = 4, 120
	// Hot streams shared by writers, and batches of several events.
	writing := l.writeConcurrently(t, writer, writers, perWriter, 7)

	// Snapshots of the model, checked against the log once it is complete.
	var snapshots []modelState
	var probing sync.WaitGroup
	stopProbe := make(chan struct{})
	var stopOnce sync.Once
	endProbe := func() { stopOnce.Do(func() { close(stopProbe) }); probing.Wait() }
	t.Cleanup(endProbe) // before the schemas are dropped, should the test fail early
	probing.Go(func() {
		for {
			select {
			case <-stopProbe:
				return
			case <-time.After(5 * time.Millisecond):
			}
			s, ok, err := observe(context.Background(), admin, name)
			if err != nil {
				t.Errorf("observing the model: %v", err)
				return
			}
			if ok {
				snapshots = append(snapshots, s)
			}
		}
	})

	ctx := context.Background()
	kills, restarts := 0, 0
	for round := 0; ; round++ {
		select {
		case <-writing:
		case <-time.After(40 * time.Millisecond):
			if round%3 == 2 {
				i := rand.IntN(2)
				require.NoError(t, runs[i].stop())
				runs[i] = startRunner(t, members[i])
				restarts++
				continue
			}
			for pid := range lockSessions(t, admin, projection.LockKey("leader", schema, name), true) {
				_, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
				require.NoError(t, err)
				kills++
			}
			continue
		}
		break
	}
	require.False(t, t.Failed())

	want, last, n := l.snapshot()
	require.Equal(t, int64(writers*perWriter*2), n)
	waitFor(t, members[0], last, progressWait, name)
	endProbe()
	require.Equal(t, want, totalsOf(t, admin, name), "per-stream sums and counts")
	st := status(t, members[1], name)
	require.Equal(t, n, st.EventsApplied, "events applied, counted by the checkpoint")
	require.Equal(t, last, st.Checkpoint, "the checkpoint is the last event's KurrentDB position")
	require.Zero(t, st.DeadLetters)
	require.Zero(t, st.Lag)

	log := readWholeLog(t, writer)
	require.Equal(t, int(n), len(log), "events in the KurrentDB log")
	final, ok, err := observe(ctx, admin, name)
	require.NoError(t, err)
	require.True(t, ok)
	snapshots = append(snapshots, final)
	moved := map[eventstore.Position]bool{}
	for _, s := range snapshots {
		rows, applied := expectedAt(log, s.checkpoint)
		require.Equal(t, applied, s.applied, "events_applied at checkpoint %s", s.checkpoint)
		require.Equal(t, rows, s.rows, "the model at checkpoint %s", s.checkpoint)
		moved[s.checkpoint] = true
	}
	verifyIdentical(t, members[0], name)
	for _, r := range runs {
		require.NoError(t, r.stop())
	}
	t.Logf("%d events, %d snapshots at %d checkpoints, %d leader sessions killed, %d runner restarts", n, len(snapshots), len(moved), kills, restarts)
	require.Positive(t, kills)
	require.Greater(t, len(moved), 2, "snapshots saw the model part-way")
}

// WaitFor takes a KurrentDB append's position as the read-your-writes
// token: once it returns, the model holds the event; an event the
// projection ignores counts as reached; a position past the log times out
// with the typed error. The position survives its text form, as it does
// in HTTP headers.
func TestKurrentDBWaitForReadsYourWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	k := kurrentdbtest.NewTarget(t)
	store := k.Open(t)
	pool := pgtest.Pool(t, 10)
	mgr := kurrentManager(t, k.Open(t), pool, readSideSchema(t, pool), projection.Config{BatchSize: 7})
	p := &totals{name: uniqueName(t, "kdbwait"), version: 1}
	require.NoError(t, mgr.Register(p))

	for i := range 20 {
		_, err := store.Append(ctx, "acct-1", eventstore.Any, []eventstore.Event{added(i)})
		require.NoError(t, err)
	}
	run := startRunner(t, mgr)

	var positions []eventstore.Position
	for i := range 30 {
		res, err := store.Append(ctx, fmt.Sprintf("acct-%d", 2+i%3), eventstore.Any, []eventstore.Event{added(1)})
		require.NoError(t, err)
		token, err := eventstore.ParsePosition(res.Position.String())
		require.NoError(t, err)
		require.Equal(t, res.Position, token)
		positions = append(positions, token)
		// Read your write: right after the wait, the model has the event.
		waitFor(t, mgr, token, 10*time.Second, p.Name())
		rows := totalsOf(t, pool, p.Name())
		require.Equal(t, int64(i/3+1), rows[fmt.Sprintf("acct-%d", 2+i%3)][1], "after WaitFor(%s)", token)
	}
	for i := 1; i < len(positions); i++ {
		require.True(t, positions[i-1].Before(positions[i]), "KurrentDB positions sort in append order")
	}
	require.Equal(t, [2]int64{190, 20}, totalsOf(t, pool, p.Name())["acct-1"])

	// An event of a type the projection ignores: nothing to apply, and
	// the wait still ends, through the log's head and a filtered read.
	other, err := store.Append(ctx, "other-1", eventstore.Any, []eventstore.Event{{Type: "Ignored"}})
	require.NoError(t, err)
	waitFor(t, mgr, other.Position, 10*time.Second, p.Name())
	st := status(t, mgr, p.Name())
	require.Equal(t, int64(50), st.EventsApplied)
	require.Equal(t, positions[len(positions)-1], st.Checkpoint)
	require.Zero(t, st.Lag)

	// A stopped projection does not reach a new event: WaitFor does not
	// report what is not there.
	require.NoError(t, run.stop())
	late, err := store.Append(ctx, "acct-9", eventstore.Any, []eventstore.Event{added(3)})
	require.NoError(t, err)
	notReached(t, mgr, late.Position, 500*time.Millisecond, p.Name())
	startRunner(t, mgr)
	waitFor(t, mgr, late.Position, 10*time.Second, p.Name())
	require.Equal(t, [2]int64{3, 1}, totalsOf(t, pool, p.Name())["acct-9"])

	// Past the log's head: the typed timeout.
	short, shortCancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer shortCancel()
	far := eventstore.Position{Tx: late.Position.Tx + 1_000_000, Seq: late.Position.Seq + 1_000_000}
	err = mgr.WaitFor(short, far, p.Name())
	require.ErrorIs(t, err, projection.ErrWaitTimeout)
	var wt *projection.WaitTimeoutError
	require.ErrorAs(t, err, &wt)
	require.Equal(t, p.Name(), wt.Projection)
	require.Equal(t, late.Position, wt.Reached)
}
