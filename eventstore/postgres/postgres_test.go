package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/eventstore"
	"github.com/cairn-es/cairn/eventstore/postgres"
	"github.com/cairn-es/cairn/eventstore/storetest"
	"github.com/cairn-es/cairn/internal/pgtest"
	"github.com/cairn-es/cairn/migrations"
)

func newStore(t *testing.T) *postgres.Store {
	pool := pgtest.Pool(t, 40)
	s, err := postgres.New(pool, postgres.Config{Schema: pgtest.Schema(t, pool)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestAcceptance runs the shared suite, the full-size ordering proof
// included, against PostgreSQL.
func TestAcceptance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store { return newStore(t) })
}

func TestSnapshots(t *testing.T) {
	storetest.RunSnapshots(t, func(t *testing.T) eventstore.SnapshotStore { return newStore(t) })
}

// A transaction that holds an ID while an append commits holds readers back
// at the horizon: the event is not delivered, HeldBackBy names the
// transaction, and once it ends the event arrives, in order.
func TestHorizonHoldsReadersBackUntilOlderTransactionEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newStore(t)
	pool := pgtest.Pool(t, 4)

	before, err := s.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{{Type: "Before"}})
	require.NoError(t, err)
	// Other tests' transactions may hold it back for a moment too.
	storetest.AwaitReadable(t, ctx, s, before.Position)

	blocker, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = blocker.Rollback(ctx) }()
	var blockerTx uint64
	require.NoError(t, blocker.QueryRow(ctx, "SELECT pg_current_xact_id()").Scan(&blockerTx))

	res, err := s.Append(ctx, "order-2", eventstore.NoStream, []eventstore.Event{{Type: "After"}})
	require.NoError(t, err)
	require.Greater(t, res.Position.Tx, blockerTx)

	events, err := s.ReadLog(ctx, eventstore.Start, eventstore.ReadLogOptions{})
	require.NoError(t, err)
	require.Len(t, events, 1, "the event committed after the open transaction began must wait for it")
	require.Equal(t, "Before", events[0].Type)

	holders, err := s.HeldBackBy(ctx)
	require.NoError(t, err)
	var found bool
	for _, h := range holders {
		found = found || h.Tx == blockerTx%(1<<32) // pg_stat_activity shows the 32-bit ID
	}
	require.True(t, found, "HeldBackBy must list the open transaction %d: %+v", blockerTx, holders)

	require.NoError(t, blocker.Rollback(ctx))
	storetest.AwaitReadable(t, ctx, s, res.Position) // other tests' transactions may still hold it
	events, err = s.ReadLog(ctx, events[0].Position, eventstore.ReadLogOptions{})
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, "After", events[0].Type)
	require.Equal(t, res.Position, events[0].Position)
}

// The append function refuses a transaction that already has an ID: its ID
// could predate the stream lock and put versions out of log order.
func TestAppendRefusesATransactionWithAnID(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	pool := pgtest.Pool(t, 2)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "SELECT pg_current_xact_id()")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, fmt.Sprintf(`SELECT * FROM %s.append('order-1', 0::smallint, 0, ARRAY[gen_random_uuid()], ARRAY['X'], ARRAY[1], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], NULL, NULL, NULL, ARRAY[NULL::timestamptz])`, s.Schema()))
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "CA001", pgErr.Code)
}

func TestNewRejectsABadSchemaName(t *testing.T) {
	pool := pgtest.Pool(t, 1)
	_, err := postgres.New(pool, postgres.Config{Schema: "Robert'); DROP TABLE students;--"})
	require.ErrorIs(t, err, migrations.ErrInvalidSchema)
}

func TestQueries(t *testing.T) {
	storetest.RunQueries(t, func(t *testing.T) eventstore.Store { return newStore(t) })
}

// The subscription's read, ReadLogHoldback, honours Since as ReadLog does,
// in the page and in the held-back test alike.
func TestReadLogHoldbackSince(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newStore(t)
	res, err := s.Append(ctx, "order-1", eventstore.NoStream, []eventstore.Event{{Type: "T"}, {Type: "T"}})
	require.NoError(t, err)
	storetest.AwaitReadable(t, ctx, s, res.Position)
	events, held, err := s.ReadLogHoldback(ctx, eventstore.Start, eventstore.ReadLogOptions{Since: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	require.False(t, held)
	require.Len(t, events, 2)
	events, held, err = s.ReadLogHoldback(ctx, eventstore.Start, eventstore.ReadLogOptions{Since: events[0].RecordedAt.Add(time.Nanosecond)})
	require.NoError(t, err)
	require.False(t, held)
	require.Empty(t, events, "both events were recorded before the bound")
}
